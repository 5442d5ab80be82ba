#!/usr/bin/env node
// Runs the compiled test suites with node's test runner (TAP), one file at a time, and ends with
// one "tests: N passed, N failed" line. Usage: node scripts/run-tests.mjs [unit|integration|e2e|FILE ...]
//
// Nothing hangs: every test gets node's --test-timeout (MOCKFLEET_TEST_TIMEOUT_MS, default 120 s;
// node then fails it by name), and every file a watchdog (MOCKFLEET_FILE_TIMEOUT_MS, default
// 300 s) that kills the file's process group and names the file and the last test that finished.
// --test-force-exit ends a file whose tests finished but left a handle open.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const GROUPS = ['unit', 'integration', 'e2e'];
const selected = args.length > 0 ? args : GROUPS;
const testTimeoutMs = Number(process.env.MOCKFLEET_TEST_TIMEOUT_MS ?? 120_000);
const fileTimeoutMs = Number(process.env.MOCKFLEET_FILE_TIMEOUT_MS ?? 300_000);

function collect(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const files = selected.flatMap((g) => (GROUPS.includes(g) ? collect(join(root, 'dist/test', g)) : [resolve(g)]));
if (files.length === 0) {
  console.error(`mockfleet: no compiled tests under dist/test/{${selected.join(',')}}`);
  process.exit(1);
}
if (files.some((f) => !f.includes(`${join('dist', 'test', 'unit')}`))) {
  const r = spawnSync('bash', [join(root, 'scripts/ensure-system-deps.sh')], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('mockfleet: could not install the system components the tests need');
    process.exit(1);
  }
}

let running = null;

/** Runs one file; resolves with its pass/fail counts (a crash or a timeout counts as a failure). */
function runFile(file) {
  return new Promise((done) => {
    const name = relative(root, file);
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--test', '--test-reporter=tap', `--test-timeout=${testTimeoutMs}`, '--test-force-exit', file], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true, // its own process group, so the watchdog also ends the servers it spawned
    });
    running = child;
    let tail = '';
    let lastFinished = null;
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      const text = chunk.toString('utf8');
      tail = (tail + text).slice(-8192);
      for (const m of text.matchAll(/^\s*(?:not )?ok \d+ - (.*?)(?: # .*)?$/gm)) lastFinished = m[1];
    });
    let timedOut = false;
    const watchdog = setTimeout(() => {
      timedOut = true;
      const where = lastFinished === null ? 'before its first test finished' : `in the test after "${lastFinished}"`;
      console.log(`not ok - ${name} ran over ${fileTimeoutMs} ms ${where}; killed`);
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, fileTimeoutMs);
    child.on('close', (code) => {
      clearTimeout(watchdog);
      running = null;
      const p = /^# pass (\d+)$/m.exec(tail);
      const f = /^# fail (\d+)$/m.exec(tail);
      let pass = p ? Number(p[1]) : 0;
      let fail = f ? Number(f[1]) : 0;
      if (timedOut || !p || code !== 0) fail = Math.max(fail, 1);
      if (timedOut) pass = 0;
      console.log(`# file ${name}: ${pass} passed, ${fail} failed, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      done({ name, pass, fail });
    });
  });
}

let pass = 0;
let fail = 0;
const failedFiles = [];
const interrupted = () => {
  if (running !== null) {
    try {
      process.kill(-running.pid, 'SIGKILL');
    } catch {
      running.kill('SIGKILL');
    }
  }
  console.log(`tests: ${pass} passed, ${fail + 1} failed`);
  process.exit(130);
};
process.on('SIGINT', interrupted);
process.on('SIGTERM', interrupted);
for (const file of files) {
  const r = await runFile(file);
  pass += r.pass;
  fail += r.fail;
  if (r.fail > 0) failedFiles.push(r.name);
}
if (failedFiles.length > 0) console.log(`# failing files: ${failedFiles.join(', ')}`);
console.log(`tests: ${pass} passed, ${fail} failed`);
process.exit(fail === 0 && pass > 0 ? 0 : 1);
