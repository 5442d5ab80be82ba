import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { spawnCli, startServe } from '../support/serve-process.js';

const TRACE = fileURLToPath(new URL('../../../data/mooncake/conversation_trace.jsonl', import.meta.url));

test('replay - online replay against serve; Ctrl-C prints the partial report and exits 130', { timeout: 90_000 }, async () => {
  const serve = await startServe(['--num-workers', '2', '--speedup-ratio', '50']);
  try {
    const child = spawnCli(['replay', TRACE, '--url', serve.ready.url, '--num-requests', '400', '--arrival-speedup-ratio', '20']);
    // Wait for replay to be under way (its progress or first completions), failing fast if it died.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(child.exitStatus(), null, `replay ended early; stderr:\n${child.stderrTail()}`);
    const s = await child.stop('SIGINT', 20_000);
    const stderr = child.stderrTail();
    const stdout = child.stdout();
    assert.equal(s.code, 130, `exit code; stderr: ${stderr}`);
    assert.match(stderr, /interrupted, reporting what finished/);
    assert.match(stdout, /interrupted: partial/);
    assert.match(stdout, /Time to first token/i);
    const m = /(\d+) \/ 400|completed[^\d]*(\d+)/i.exec(stdout);
    assert.ok(m !== null, `a completed count in:\n${stdout}`);
    const health = await fetch(`${serve.ready.url}/health`);
    assert.equal(health.status, 200, 'the server is unaffected by the client going away');
  } finally {
    assert.equal(await serve.stop(), 0, serve.stderr());
  }
});

test('replay - a replay child that fails at once (missing trace) fails the wait within seconds', { timeout: 30_000 }, async () => {
  const t0 = Date.now();
  const child = spawnCli(['replay', 'data/mooncake/no-such-trace.jsonl', '--url', 'http://127.0.0.1:9', '--num-requests', '4']);
  await assert.rejects(
    child.waitFor((out) => (out.includes('\n') ? out : null), 'report', 20_000),
    (e: Error) => /exited \(code 2/.test(e.message) && /no-such-trace/.test(e.message),
  );
  assert.ok(Date.now() - t0 < 10_000, `failed after ${Date.now() - t0} ms, not at once`);
  assert.deepEqual(await child.waitExit(1000), { code: 2, signal: null }, 'waitExit resolves at once for a child already gone');
});
