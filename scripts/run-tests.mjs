#!/usr/bin/env node
// Runs the compiled test suites with node's test runner (TAP) and ends with one
// "N passed, N failed" line. Usage: node scripts/run-tests.mjs [unit|integration|e2e ...]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const groups = process.argv.slice(2);
const selected = groups.length > 0 ? groups : ['unit', 'integration', 'e2e'];

if (selected.some((g) => g !== 'unit')) {
  const r = spawnSync('bash', [join(root, 'scripts/ensure-system-deps.sh')], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('mockfleet: could not install the system components the tests need');
    process.exit(1);
  }
}

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
const files = selected.flatMap((g) => collect(join(root, 'dist/test', g)));
if (files.length === 0) {
  console.error(`mockfleet: no compiled tests under dist/test/{${selected.join(',')}}`);
  process.exit(1);
}

const child = spawn(process.execPath, ['--test', '--test-reporter=tap', ...files], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});
let pass = 0;
let fail = 0;
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).slice(-4096);
});
child.on('close', (code) => {
  const p = /^# pass (\d+)$/m.exec(tail);
  const f = /^# fail (\d+)$/m.exec(tail);
  pass = p ? Number(p[1]) : 0;
  fail = f ? Number(f[1]) : 0;
  if (!p) fail = Math.max(fail, 1);
  console.log(`tests: ${pass} passed, ${fail} failed`);
  process.exit(code === 0 && fail === 0 && pass > 0 ? 0 : 1);
});
