import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLI, startServe } from '../support/serve-process.js';

const TRACE = fileURLToPath(new URL('../../../data/mooncake/conversation_trace.jsonl', import.meta.url));

test('replay - online replay against serve; Ctrl-C prints the partial report and exits 130', async () => {
  const serve = await startServe(['--num-workers', '2', '--speedup-ratio', '50']);
  try {
    const child = spawn(process.execPath, [CLI, 'replay', TRACE, '--url', serve.ready.url, '--num-requests', '400', '--arrival-speedup-ratio', '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    await new Promise((r) => setTimeout(r, 3000));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    assert.equal(code, 130, `exit code; stderr: ${stderr}`);
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
