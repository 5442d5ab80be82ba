import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseReadyLine } from '../../src/cli/ready.js';

test('parseReadyLine - parses only a complete line, however the pipe splits it', { timeout: 10_000 }, () => {
  const info = { url: 'http://127.0.0.1:1', worker_ids: Array.from({ length: 4096 }, (_, i) => String(2n ** 63n + BigInt(i))) };
  const line = `mockfleet ready ${JSON.stringify(info)}\n`;
  const text = `some log\n${line}after\n`;
  // Every prefix without the newline yields null (no partial JSON parse); with it, the object.
  for (const cut of [0, 10, 17, 1000, 40_000, text.indexOf('\n', 10)]) {
    assert.equal(parseReadyLine(text.slice(0, cut)), null, `cut at ${cut}`);
  }
  assert.deepEqual(parseReadyLine(text), info);
  assert.deepEqual(parseReadyLine(line), info);
  assert.equal(parseReadyLine('xmockfleet ready {}\n'), null, 'the prefix must start a line');
});

test('run-tests - a file that hangs fails at its timeout, named with the test that ran over, and its children are killed', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-hang-'));
  const file = join(dir, 'hang.test.js');
  writeFileSync(
    file,
    "import { test } from 'node:test';\nimport { spawn } from 'node:child_process';\n" +
      "test('finishes', () => {});\n" +
      "import { writeFileSync } from 'node:fs';\n" +
      `test('waits on a child forever', async () => { const c = spawn('sleep', ['300']); writeFileSync(${JSON.stringify(join(dir, 'child.pid'))}, String(c.pid)); await new Promise((r) => c.on('exit', r)); });\n`,
  );
  const script = fileURLToPath(new URL('../../../scripts/run-tests.mjs', import.meta.url));
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [script, file], {
    encoding: 'utf8',
    timeout: 50_000,
    env: { ...process.env, MOCKFLEET_FILE_TIMEOUT_MS: '3000' },
  });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.ok(Date.now() - t0 < 40_000);
  assert.match(r.stdout, /hang\.test\.js ran over 3000 ms in the test after "finishes"$/m);
  assert.match(r.stdout, /^tests: 1 passed, 1 failed$/m);
  // The child the hung test spawned (its pid written by the test) is gone with the file's process group.
  const pid = Number(readFileSync(join(dir, 'child.pid'), 'utf8'));
  assert.ok(pid > 0);
  // SIGKILL is delivered asynchronously and init reaps the orphan: allow a moment, and count a
  // zombie (state Z) as dead.
  const alive = (): boolean => {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  const until = Date.now() + 5000;
  while (alive() && Date.now() < until) spawnSync('sleep', ['0.05']);
  assert.equal(alive(), false, `the test's child ${pid} was killed with its file`);
});

test('run-tests - a file whose first test never settles fails at its timeout', { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-slow-'));
  const file = join(dir, 'slow.test.js');
  writeFileSync(file, "import { test } from 'node:test';\ntest('never settles', () => new Promise(() => { setInterval(() => {}, 1000); }));\n");
  const script = fileURLToPath(new URL('../../../scripts/run-tests.mjs', import.meta.url));
  const r = spawnSync(process.execPath, [script, file], { encoding: 'utf8', timeout: 50_000, env: { ...process.env, MOCKFLEET_FILE_TIMEOUT_MS: '1500' } });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /test timed out after 1500ms/);
  assert.match(r.stdout, /slow\.test\.js ran over 1500 ms before its first test finished$/m);
  assert.match(r.stdout, /^tests: 0 passed, 1 failed$/m);
});
