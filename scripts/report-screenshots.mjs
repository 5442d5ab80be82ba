#!/usr/bin/env node
// Regenerates docs/bench-report.png and docs/replay-report.png (the README pictures of the HTML
// reports). Run after `npm run build`: node scripts/report-screenshots.mjs
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { parseReadyLine } from '../dist/src/cli/ready.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist/src/cli/main.js');
// Relative to the repository root (the cwd of the child): the report shows the path as given,
// and a committed picture must not show this machine's folders.
const trace = 'data/mooncake/conversation_trace.jsonl';
const out = mkdtempSync(join(tmpdir(), 'mockfleet-reports-'));

execFileSync(process.execPath, [cli, 'replay', trace, '--offline', '--num-workers', '16', '--router', 'kv', '--num-requests', '3000', '--html', join(out, 'replay.html')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });

const serve = spawn(process.execPath, [cli, 'serve', '--port', '0', '--num-workers', '4', '--speedup-ratio', '20'], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve, reject) => {
  let buf = '';
  serve.stdout.on('data', (c) => {
    buf += c.toString();
    const r = parseReadyLine(buf);
    if (r !== null) resolve(r.url);
  });
  serve.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
});
try {
  execFileSync(process.execPath, [cli, 'bench', '--url', url, '--concurrency', '32', '--isl', '512', '--osl', '128', '--duration', '10', '--warmup', '2', '--html', join(out, 'bench.html')], { stdio: ['ignore', 'ignore', 'inherit'] });
} finally {
  serve.kill('SIGTERM');
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  for (const name of ['bench', 'replay']) {
    await page.goto(`file://${join(out, `${name}.html`)}`);
    await page.screenshot({ path: join(root, 'docs', `${name}-report.png`), fullPage: false });
    console.log(`docs/${name}-report.png`);
  }
} finally {
  await browser.close();
}
