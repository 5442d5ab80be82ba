/** `trace synth`: statistics of the output against the source, determinism, knobs, sessions, bad input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { computeTraceStats, parseMooncakeTrace, readMooncakeTrace } from '../../src/trace/mooncake.js';
import type { TraceRequest } from '../../src/trace/mooncake.js';
import { synthesizeTrace } from '../../src/trace/synth.js';
import type { SynthOptions } from '../../src/trace/synth.js';
import { parseDurationMs } from '../../src/cli/commands/trace.js';
import { InvalidConfigError } from '../../src/util/errors.js';

const TRACE = fileURLToPath(new URL('../../../data/mooncake/conversation_trace.jsonl', import.meta.url));
const BASE: SynthOptions = { durationMs: 3_537_000, rateScale: 1, prefixLenMultiplier: 1, promptLenMultiplier: 1, seed: 1, traceBlockSize: 512 };

async function synth(src: readonly TraceRequest[], opts: Partial<SynthOptions> = {}): Promise<string> {
  let text = '';
  await synthesizeTrace(src, { ...BASE, ...opts }, async (c) => { text += c; });
  return text;
}

const rel = (a: number, b: number): number => Math.abs(a - b) / Math.abs(b);

test('trace-synth - a conversation-like hour matches the source: counts, ISL/OSL mean and p90, ideal reuse', async () => {
  const src = await readMooncakeTrace(TRACE);
  const text = await synth(src);
  const out = parseMooncakeTrace(text, 'synth');
  const a = computeTraceStats(src, 512), b = computeTraceStats(out, 512);
  assert.ok(rel(b.requests, a.requests) < 0.03, `requests ${b.requests} vs ${a.requests}`);
  for (const [name, x, y] of [
    ['isl mean', b.input.mean, a.input.mean], ['isl p90', b.input.p90, a.input.p90],
    ['osl mean', b.output.mean, a.output.mean], ['osl p90', b.output.p90, a.output.p90],
  ] as const) assert.ok(rel(x, y) < 0.03, `${name}: ${x} vs ${y}`);
  // Every core prefix visited in the output re-uses blocks; the source's reuse is matched closely.
  assert.ok(rel(b.idealPrefixReuseRatio, a.idealPrefixReuseRatio) < 0.06, `reuse ${b.idealPrefixReuseRatio} vs ${a.idealPrefixReuseRatio}`);
  assert.ok(b.spanMs <= BASE.durationMs);
  // Same seed, same bytes; another seed differs.
  assert.equal(await synth(src), text);
  assert.notEqual(await synth(src, { seed: 2 }), text);
  // Twice the rate: twice the requests in the same span, same bursts.
  const fast = parseMooncakeTrace(await synth(src, { rateScale: 2, durationMs: 600_000 }), 'fast');
  const slow = parseMooncakeTrace(await synth(src, { durationMs: 600_000 }), 'slow');
  assert.ok(rel(fast.length, 2 * slow.length) < 0.1, `${fast.length} vs 2 × ${slow.length}`);
});

function tr(ts: number, ids: number[], inputLength = ids.length * 4, outputLength = 3, sessionId: string | null = null, delayMs: number | null = null): TraceRequest {
  return { timestampMs: ts, inputLength, outputLength, hashIds: Uint32Array.from(ids), sessionId, delayMs, line: 0 };
}

test('trace-synth - shared prefixes stay shared, leaves are new; multipliers stretch each part', async () => {
  // Core: 0 → 1 (every request); leaves of 2 blocks each.
  const src = [tr(0, [0, 1, 10, 11]), tr(1000, [0, 1, 20, 21]), tr(2000, [0, 1, 30, 31])];
  const opts = { traceBlockSize: 4, durationMs: 60_000, seed: 3 };
  const plain = parseMooncakeTrace(await synth(src, opts), 'p');
  assert.ok(plain.length >= 20);
  const seen = new Set<number>();
  for (const r of plain) {
    assert.deepEqual([...r.hashIds.subarray(0, 2)], [0, 1]);
    assert.equal(r.hashIds.length, 4);
    for (const id of r.hashIds.subarray(2)) {
      assert.ok(!seen.has(id), `leaf id ${id} reused`);
      seen.add(id);
    }
    assert.equal(r.inputLength, 16);
  }
  const stretched = parseMooncakeTrace(await synth(src, { ...opts, prefixLenMultiplier: 2, promptLenMultiplier: 1.5 }), 's');
  for (const r of stretched) {
    assert.deepEqual([...r.hashIds.subarray(0, 4)], [0, 1, 2, 3]);
    assert.equal(r.hashIds.length, 4 + 3);
  }
  const shrunk = parseMooncakeTrace(await synth(src, { ...opts, prefixLenMultiplier: 0.5, promptLenMultiplier: 0.5 }), 's');
  for (const r of shrunk) assert.equal(r.hashIds.length, 1 + 1);
});

test('trace-synth - sessions keep their turns: later turns extend the previous prompt after a delay', async () => {
  const src = [
    tr(0, [0, 1], 8, 3, 'a'), tr(500, [0, 1, 2], 12, 3, 'a', 500), tr(900, [0, 1, 2, 3], 16, 3, 'a', 400),
    tr(100, [0, 5], 8, 3, 'b'), tr(400, [0, 5, 6], 12, 3, 'b', 300), tr(800, [0, 5, 6, 7], 16, 3, 'b', 400),
  ];
  const text = await synth(src, { traceBlockSize: 4, durationMs: 10_000, seed: 5 });
  const out = parseMooncakeTrace(text, 's');
  const bySession = new Map<string, TraceRequest[]>();
  for (const r of out) {
    assert.notEqual(r.sessionId, null);
    const list = bySession.get(r.sessionId as string) ?? [];
    list.push(r);
    bySession.set(r.sessionId as string, list);
  }
  assert.ok(bySession.size >= 2);
  for (const turns of bySession.values()) {
    assert.equal(turns.length, 3);
    for (let k = 1; k < 3; k++) {
      const prev = turns[k - 1] as TraceRequest, cur = turns[k] as TraceRequest;
      assert.deepEqual([...cur.hashIds.subarray(0, prev.hashIds.length)], [...prev.hashIds]);
      assert.equal(cur.hashIds.length, prev.hashIds.length + 1);
      assert.ok(cur.delayMs === 300 || cur.delayMs === 400 || cur.delayMs === 500);
    }
  }
  // The bytes are written by hand: each line is exactly what the documented layout gives (field
  // order, ", " and ": " separators, first turns with a timestamp, later turns with a delay).
  for (const line of text.trimEnd().split('\n')) {
    const o = JSON.parse(line) as { timestamp?: number; delay?: number; session_id: string; input_length: number; output_length: number; hash_ids: number[] };
    const ids = `[${o.hash_ids.join(', ')}]`;
    const expected = o.timestamp !== undefined
      ? `{"timestamp": ${o.timestamp}, "input_length": ${o.input_length}, "output_length": ${o.output_length}, "hash_ids": ${ids}, "session_id": "${o.session_id}"}`
      : `{"session_id": "${o.session_id}", "delay": ${String(o.delay)}, "input_length": ${o.input_length}, "output_length": ${o.output_length}, "hash_ids": ${ids}}`;
    assert.equal(line, expected);
  }
});

test('trace-synth - bad options and durations name their flag', async () => {
  const src = [tr(0, [0, 1])];
  for (const [patch, flag] of [
    [{ rateScale: 0 }, '--rate-scale'], [{ durationMs: -1 }, '--duration'], [{ prefixLenMultiplier: Number.NaN }, '--prefix-len-multiplier'],
    [{ promptLenMultiplier: 0 }, '--prompt-len-multiplier'], [{ seed: 1.5 }, '--seed'],
  ] as const) {
    await assert.rejects(synth(src, patch), (e: unknown) => e instanceof InvalidConfigError && e.message.startsWith(flag));
  }
  await assert.rejects(synth([]), InvalidConfigError);
  assert.equal(parseDurationMs('--duration', '24h'), 86_400_000);
  assert.equal(parseDurationMs('--duration', '90m'), 5_400_000);
  assert.equal(parseDurationMs('--duration', '250ms'), 250);
  assert.equal(parseDurationMs('--duration', '3600'), 3_600_000);
  for (const bad of ['', 'abc', '-1h', '0s', '5 weeks']) assert.throws(() => parseDurationMs('--duration', bad), /--duration/);
});
