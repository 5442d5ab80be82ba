/** `mockfleet trace synth` from the CLI: writes a trace `trace stats` and `replay --offline` read; bad flags exit 2. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../support/serve-process.js';

test('trace synth - synthesize two minutes like conversation, then stats and an offline replay of it', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-synth-'));
  try {
    const out = join(dir, 's.jsonl');
    const synth = await runCli(['trace', 'synth', '--like', 'conversation', '--duration', '2m', '--rate-scale', '2', '--seed', '7', '--out', out], 60_000);
    assert.equal(synth.code, 0, synth.stderr);
    assert.match(synth.stderr, /wrote .*s\.jsonl: \d+ requests/);
    const stats = await runCli(['trace', 'stats', out, '--json'], 60_000);
    assert.equal(stats.code, 0, stats.stderr);
    const s = JSON.parse(stats.stdout) as { requests: number; span_ms: number };
    // ≈ 3.4 req/s × 2 × 120 s
    assert.ok(s.requests > 500 && s.requests < 1100, `${s.requests} requests`);
    assert.ok(s.span_ms < 120_000);
    const replay = await runCli(['replay', out, '--offline', '--num-workers', '4', '--router', 'kv', '--router-temperature', '0.5', '--num-requests', '60'], 60_000);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /simulated 60 requests .* simulated requests per wall second\n$/);
    for (const [args, flag] of [
      [['--duration', 'soon'], '--duration'], [['--duration', '1h', '--rate-scale', '-1'], '--rate-scale'],
    ] as const) {
      const bad = await runCli(['trace', 'synth', '--like', 'conversation', '--out', join(dir, 'x.jsonl'), ...args], 60_000);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, new RegExp(flag));
    }
    const missing = await runCli(['trace', 'synth', '--like', join(dir, 'none.jsonl'), '--duration', '1m', '--out', join(dir, 'y.jsonl')], 60_000);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read trace file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
