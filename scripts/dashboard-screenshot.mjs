#!/usr/bin/env node
// Regenerates docs/dashboard.png: starts `mockfleet serve` (4 workers x 4 ranks, a private
// nats-server when one is installed), drives it with a mixed load for a while (one rank is
// crashed on purpose to show the restart marker), opens /dashboard in headless Chromium and
// saves a full-page screenshot. Run after `npm run build`:
//   node scripts/dashboard-screenshot.mjs [--out docs/dashboard.png] [--load-s 45]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const opt = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : process.argv[i + 1];
};
const out = resolve(root, opt('out', 'docs/dashboard.png'));
const loadS = Number(opt('load-s', '45'));
const CHROMIUM = '/usr/bin/chromium';
const cli = join(root, 'dist/src/cli/main.js');
if (!existsSync(cli)) throw new Error(`${cli} is missing; run npm run build first`);
if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing; run scripts/ensure-system-deps.sh`);

const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** Spawn and resolve with the first regex match on the given stream. */
function startAndMatch(cmd, args, stream, re, what) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let text = '';
    let err = '';
    const guard = setTimeout(() => reject(new Error(`${what} did not start in 60 s:\n${err}`)), 60_000);
    child.stderr.on('data', (c) => (err += c.toString()));
    child[stream].on('data', (c) => {
      text += c.toString();
      const m = re.exec(text);
      if (m !== null) {
        clearTimeout(guard);
        resolve({ child, match: m });
      }
    });
    child.on('exit', (code) => reject(new Error(`${what} exited with ${code}:\n${err}`)));
  });
}

let natsUrl = null;
if (spawnSync('sh', ['-c', 'command -v nats-server']).status === 0) {
  const { match } = await startAndMatch('nats-server', ['-a', '127.0.0.1', '-p', '-1'], 'stderr', /Listening for client connections on [^\s]*:(\d+)/, 'nats-server');
  natsUrl = `nats://127.0.0.1:${match[1]}`;
}
const serveArgs = [cli, 'serve', '--port', '0', '--num-workers', '4', '--data-parallel-size', '4', '--speedup-ratio', '2',
  '--num-gpu-blocks', '400', '--block-size', '16', '--enable-fault-injection', '--cpus', availableParallelism() > 1 ? '0-1' : '0', ...(natsUrl === null ? [] : ['--nats', natsUrl])];
const { child: serve, match } = await startAndMatch(process.execPath, serveArgs, 'stdout', /^mockfleet ready (.*)\n/m, 'mockfleet serve'); // a complete line only
const ready = JSON.parse(match[1]);

// Load: closed-loop clients; prompts share one of a few long prefixes so the prefix cache hits.
let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
const prefixes = Array.from({ length: 6 }, (_, p) => Array.from({ length: 1024 }, (_, i) => 1000 + p * 5000 + i));
let stop = false;
let ok = 0;
let failed = 0;
let lastError = null;
async function client(id) {
  while (!stop) {
    const prefix = prefixes[Math.floor(rand() * prefixes.length)].slice(0, 256 + Math.floor(rand() * 768));
    const suffix = Array.from({ length: 32 + Math.floor(rand() * 480) }, () => 100 + Math.floor(rand() * 30000));
    try {
      const res = await fetch(`${ready.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: ready.model, prompt: [...prefix, ...suffix], max_tokens: 32 + Math.floor(rand() * 400), stream: false }),
      });
      await res.arrayBuffer();
      if (res.status === 200) ok++;
      else failed++;
    } catch (err) {
      // The crashed rank cuts its requests; the load goes on, the count is reported at the end.
      failed++;
      lastError = err;
    }
    if (id % 4 === 0) await new Promise((r) => setTimeout(r, rand() * 300));
  }
}
const clients = Array.from({ length: 56 }, (_, i) => client(i));
await new Promise((r) => setTimeout(r, (loadS * 1000) / 3));
const fault = await fetch(`${ready.url}/admin/fault`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rank: 6, kind: 'throw' }) });
if (fault.status !== 202) throw new Error(`fault injection answered ${fault.status}: ${await fault.text()}`);
await new Promise((r) => setTimeout(r, (loadS * 1000 * 2) / 3));

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--hide-scrollbars'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1480, height: 1000 }, deviceScaleFactor: 1 });
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${ready.url}/dashboard`);
  await page.waitForFunction(() => window.mfDashboard.ticks >= 4, undefined, { timeout: 20_000 });
  await page.hover('.db-tile[data-rank="10"]');
  await page.waitForTimeout(700);
  mkdirSync(dirname(out), { recursive: true });
  await page.screenshot({ path: out, fullPage: true });
  if (errors.length > 0) throw new Error(`page reported errors: ${errors.join('; ')}`);
} finally {
  await browser.close();
  stop = true;
  await Promise.all(clients);
  serve.kill('SIGTERM');
  await new Promise((r) => (serve.exitCode === null ? serve.once('exit', r) : r()));
  for (const c of children) if (c !== serve && c.exitCode === null) c.kill('SIGTERM');
}
process.stderr.write(`dashboard-screenshot: wrote ${out} (${ok} requests ok, ${failed} failed during the load${lastError === null ? '' : `; last error: ${lastError.message}`})\n`);
