#!/usr/bin/env node
// Smoke run of a checkout as a new user would use it, from the repository root: `npm start`
// (serve on the embedded default) answers a completion and /metrics, `trace stats` and an offline
// `replay` read the in-repo trace. Every step is bounded in time and fails with the child's stderr.
// Usage (after npm ci): node scripts/smoke.mjs
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TRACE = 'data/mooncake/conversation_trace.jsonl';
const readyFile = join(mkdtempSync(join(tmpdir(), 'mockfleet-smoke-')), 'ready.json');

function step(what, fn) {
  const t0 = Date.now();
  return Promise.resolve(fn()).then((v) => {
    console.log(`smoke: ${what} ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    return v;
  });
}

function run(args, timeoutMs) {
  return execFileSync(process.execPath, args, { cwd: root, timeout: timeoutMs, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const serve = spawn('npm', ['start', '--', '--port', '0', '--ready-file', readyFile], { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
const killServe = (sig) => {
  try {
    process.kill(-serve.pid, sig);
  } catch {
    /* already gone */
  }
};
process.on('exit', () => killServe('SIGKILL'));
let stderr = '';
serve.stderr.on('data', (c) => (stderr = (stderr + c).slice(-8000)));
try {
  const ready = await step('npm start prints its ready line', () =>
    new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`npm start: no ready line in 120 s; stderr:\n${stderr}`)), 120_000);
      serve.stdout.on('data', (c) => {
        out += c;
        const m = /^mockfleet ready (.*)\n/m.exec(out);
        if (m !== null) {
          clearTimeout(timer);
          resolve(JSON.parse(m[1]));
        }
      });
      serve.on('exit', (code) => reject(new Error(`npm start exited (${code}) before ready; stderr:\n${stderr}`)));
    }),
  );
  await step('--ready-file holds the ready JSON', () => {
    const fromFile = JSON.parse(readFileSync(readyFile, 'utf8'));
    if (fromFile.url !== ready.url || fromFile.pid !== ready.pid) throw new Error(`ready file ${readyFile} differs from the ready line`);
  });
  await step('POST /v1/completions', async () => {
    const res = await fetch(`${ready.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: ready.model, prompt: 'Hello there', max_tokens: 5 }),
      signal: AbortSignal.timeout(30_000),
    });
    const body = await res.json();
    if (res.status !== 200 || body.usage?.completion_tokens !== 5) throw new Error(`completion: ${res.status} ${JSON.stringify(body)}`);
  });
  await step('GET /metrics', async () => {
    const text = await (await fetch(ready.metrics, { signal: AbortSignal.timeout(30_000) })).text();
    if (!/^vllm:generation_tokens_total\{/m.test(text)) throw new Error('no vllm:generation_tokens_total in /metrics');
  });
  await step('SIGTERM drains and exits', () =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not exit within 30 s of SIGTERM; stderr:\n${stderr}`)), 30_000);
      serve.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      killServe('SIGTERM');
    }),
  );
} finally {
  killServe('SIGKILL');
}
await step(`trace stats ${TRACE}`, () => {
  const out = run(['dist/src/cli/main.js', 'trace', 'stats', TRACE], 60_000);
  if (!/12,?031/.test(out)) throw new Error(`trace stats did not count 12031 requests:\n${out}`);
});
await step(`replay ${TRACE} --offline`, () => {
  const out = run(['dist/src/cli/main.js', 'replay', TRACE, '--offline', '--num-workers', '4', '--router', 'kv', '--num-requests', '500', '--json', join(dirname(readyFile), 'replay.json')], 120_000);
  const report = JSON.parse(readFileSync(join(dirname(readyFile), 'replay.json'), 'utf8'));
  if (JSON.stringify(report).indexOf('500') < 0) throw new Error(`replay report without its 500 requests:\n${out}`);
});
console.log('smoke: all steps passed');
