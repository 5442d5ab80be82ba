#!/usr/bin/env node
// Runs the compiled test suites with node's test runner (TAP), one file at a time, and ends with
// one "tests: N passed, N failed" line. Usage: node scripts/run-tests.mjs [unit|integration|e2e|FILE ...]
//
// Nothing hangs: each file runs under node's --test-timeout (MOCKFLEET_FILE_TIMEOUT_MS, default
// 240 s), after which node fails it; this script then names the file and the last test that
// finished before the one that ran over. A file that does not end even then (a blocked event
// loop) is killed 30 s later. Each file runs in its own process group, which is killed when the
// file ends, so servers a test left behind never outlive it. --test-force-exit ends a file whose
// tests finished but left a handle open.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const GROUPS = ['unit', 'integration', 'e2e'];
const selected = args.length > 0 ? args : GROUPS;
const fileTimeoutMs = Number(process.env.MOCKFLEET_FILE_TIMEOUT_MS ?? 240_000);
const BACKSTOP_MS = 30_000;

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

// A run started from inside a test (the runner's own tests) must not talk node's internal
// parent-runner protocol: it reports plain TAP like a top-level run.
const childEnv = { ...process.env };
delete childEnv.NODE_TEST_CONTEXT;
let running = null;

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* the group is gone already */
  }
}

/** Runs one file; resolves with its pass/fail counts (a crash or a timeout counts as a failure). */
function runFile(file) {
  return new Promise((done) => {
    const name = relative(root, file);
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--test', '--test-reporter=tap', `--test-timeout=${fileTimeoutMs}`, '--test-force-exit', file], {
      cwd: root,
      env: childEnv,
      stdio: ['ignore', 'pipe', 'inherit'],
      detached: true, // its own process group, so the servers a test spawned can be ended with it
    });
    running = child;
    let tail = '';
    let lastFinished = null;
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      const text = chunk.toString('utf8');
      tail = (tail + text).slice(-8192);
      for (const m of text.matchAll(/^\s*(?:not )?ok \d+ - (.*?)(?: # .*)?$/gm)) {
        if (!m[1].endsWith('.test.js')) lastFinished = m[1]; // node names a timed-out file by its path
      }
    });
    const where = () => (lastFinished === null ? 'before its first test finished' : `in the test after "${lastFinished}"`);
    let killed = false;
    const backstop = setTimeout(() => {
      killed = true;
      console.log(`not ok - ${name} did not end ${BACKSTOP_MS / 1000} s after its ${fileTimeoutMs} ms timeout ${where()}; killed`);
      killGroup(child.pid);
    }, fileTimeoutMs + BACKSTOP_MS);
    child.on('close', (code) => {
      clearTimeout(backstop);
      running = null;
      killGroup(child.pid); // whatever the file left running (servers, sleeps) ends with it
      const num = (re) => Number(re.exec(tail)?.[1] ?? 0);
      const summarized = /^# pass \d+$/m.test(tail);
      let pass = num(/^# pass (\d+)$/m);
      let fail = num(/^# fail (\d+)$/m) + num(/^# cancelled (\d+)$/m);
      if (/test timed out after \d+ms/.test(tail)) console.log(`not ok - ${name} ran over ${fileTimeoutMs} ms ${where()}`);
      if (killed || !summarized || code !== 0) fail = Math.max(fail, 1);
      if (killed) pass = 0;
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
    killGroup(running.pid);
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
