/**
 * The live dashboard in a real headless Chromium against a real `mockfleet serve`: the page
 * loads without console errors, shows one tile per rank, its numbers move under load and
 * settle back to idle afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { startServe } from '../support/serve-process.js';
import type { ServeProcess } from '../support/serve-process.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

interface TickView {
  now: { running: number; waiting: number; reqRate: number | null; tokRate: number | null; finished: number };
  ranks: { run: number[] };
}
declare const window: { mfDashboard: { ticks: number; lastTick: TickView | null }; mfPeak?: { running: number; ticks: number } };
declare const document: { querySelectorAll(sel: string): ArrayLike<{ getAttribute(n: string): string | null; textContent: string | null }> };

/** Records, inside the page, the highest fleet `running` any tick showed. */
function trackPeak(page: Page): Promise<void> {
  return page.evaluate(() => {
    const d = window.mfDashboard;
    let last = d.lastTick;
    window.mfPeak = { running: 0, ticks: 0 };
    Object.defineProperty(d, 'lastTick', {
      get: () => last,
      set: (t: TickView) => {
        last = t;
        const p = window.mfPeak as { running: number; ticks: number };
        p.running = Math.max(p.running, t.now.running);
        p.ticks++;
      },
    });
  });
}

function cardValue(page: Page, key: string): Promise<number | null> {
  return page.evaluate((k) => {
    const v = document.querySelectorAll(`.mf-card-value[data-k="${k}"]`)[0]?.getAttribute('data-v');
    return v === undefined || v === null || v === '' ? null : Number(v);
  }, key);
}

async function completions(url: string, model: string, n: number): Promise<void> {
  const prompt = Array.from({ length: 64 }, (_, i) => 100 + i);
  const one = async (i: number): Promise<void> => {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt: [...prompt, 1000 + i], max_tokens: 200, stream: false }),
    });
    const body = await res.text();
    assert.equal(res.status, 200, `completion ${i}: ${body}`);
  };
  await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
}

test('dashboard - the page shows every rank live, moves under load and returns to idle', { timeout: 120_000 }, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing; run scripts/ensure-system-deps.sh`);
  let serve: ServeProcess | null = null;
  let browser: Browser | null = null;
  try {
    serve = await startServe(['--num-workers', '4', '--data-parallel-size', '2', '--speedup-ratio', '10']);
    const { url, model } = serve.ready;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfailed', (r) => {
      if (!r.url().endsWith('/dashboard/events')) problems.push(`request failed: ${r.url()}`);
    });

    const res = await page.goto(`${url}/dashboard`);
    assert.equal(res?.status(), 200);
    await page.waitForFunction(() => window.mfDashboard.ticks >= 2, undefined, { timeout: 15_000 });
    assert.equal(await page.locator('.db-tile').count(), 8, 'one tile per rank (4 workers x 2)');
    assert.equal(await page.locator('.db-worker').count(), 4, 'tiles grouped by worker');
    assert.equal(await page.locator('#db-place tbody tr').count(), 8 + 2, 'placement: frontend, publisher and 8 ranks');
    assert.equal(await cardValue(page, 'running'), 0, 'an idle fleet runs nothing');
    const tokBefore = await cardValue(page, 'tokRate');
    assert.equal(tokBefore, 0, 'no output tokens before load');

    await trackPeak(page);
    // Waves of 40 concurrent requests until a tick has caught requests running (ranks are fast
    // at --speedup-ratio 10, so one wave can finish between two 500 ms ticks).
    const deadline = Date.now() + 60_000;
    let waves = 0;
    for (;;) {
      await completions(url, model, 40);
      waves++;
      const peak = await page.evaluate(() => (window.mfPeak as { running: number }).running);
      if (peak > 0) break;
      assert.ok(Date.now() < deadline, `no tick showed running requests after ${waves} waves`);
    }
    await page.waitForFunction(() => (window.mfDashboard.lastTick?.now.finished ?? 0) >= 40, undefined, { timeout: 10_000 });
    const busyReq = await cardValue(page, 'reqRate');
    const busyTok = await cardValue(page, 'tokRate');
    assert.ok(busyReq !== null && busyReq > 0, `requests/s moved under load (${busyReq})`);
    assert.ok(busyTok !== null && busyTok > 0, `output tokens/s moved under load (${busyTok})`);
    const ttft = await page.locator('.mf-card-value[data-k="ttft"]').textContent();
    assert.match(ttft ?? '', /\d+(\.\d+)? m?s/, `TTFT p50 shows a time (${ttft})`);
    const drawn = await page.evaluate(() => {
      let n = 0;
      const paths = document.querySelectorAll('.db-chart path[stroke]');
      for (let i = 0; i < paths.length; i++) if ((paths[i]?.getAttribute('d') ?? '').length > 0) n++;
      return n;
    });
    assert.ok(drawn > 0, 'history charts have drawn lines');

    // Idle again: nothing running or waiting, and requests/s falls to 0 once the 10 s window has
    // slid past the load.
    await page.waitForFunction(
      () => {
        const t = window.mfDashboard.lastTick;
        return t !== null && t.now.running === 0 && t.now.waiting === 0 && t.now.reqRate === 0 && t.now.tokRate === 0;
      },
      undefined,
      { timeout: 30_000 },
    );
    assert.equal(await cardValue(page, 'reqRate'), 0, 'the requests/s card shows the fall');
    const tiles = await page.evaluate(() => {
      const out: string[] = [];
      const qs = document.querySelectorAll('.db-tile .q');
      for (let i = 0; i < qs.length; i++) out.push(qs[i]?.textContent ?? '');
      return out;
    });
    assert.deepEqual(tiles, Array.from({ length: 8 }, () => '0 · 0'), 'every tile shows 0 running, 0 waiting');
    assert.deepEqual(problems, [], 'no console errors, page errors or failed requests');

    // Closing the page ends its stream; with no subscriber left the server stops ticking.
    await page.close();
    const deadlineClose = Date.now() + 10_000;
    for (;;) {
      const stats = (await (await fetch(`${url}/dashboard/stats`)).json()) as { subscribers: number };
      if (stats.subscribers === 0) break;
      assert.ok(Date.now() < deadlineClose, 'the server still counts a subscriber 10 s after the page closed');
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    if (browser !== null) await browser.close();
    if (serve !== null) {
      const code = await serve.stop('SIGTERM');
      assert.equal(code, 0, `serve exits 0 on SIGTERM; stderr:\n${serve.stderr()}`);
    }
  }
});

for (const [workers, dp] of [
  [1, 1],
  [64, 4],
  // Thousands of ranks: dense cells, still updated in place at 2 Hz without stalling the page.
  [4096, 1],
] as const) {
  const ranks = workers * dp;
  test(`dashboard - with ${ranks === 1 ? 'one rank' : `${ranks} ranks`} the page renders every tile and updates it in place without errors`, { timeout: 120_000 }, async () => {
    let serve: ServeProcess | null = null;
    let browser: Browser | null = null;
    try {
      serve = await startServe(['--num-workers', String(workers), '--data-parallel-size', String(dp), '--speedup-ratio', '10'], 90_000);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      await page.goto(`${serve.ready.url}/dashboard`);
      await page.waitForFunction(() => window.mfDashboard.ticks >= 2, undefined, { timeout: 20_000 });
      assert.equal(await page.locator('.db-tile').count(), ranks);
      // Mark every tile node, let ticks pass (with some load), and check the same nodes are still there.
      await page.evaluate(() => {
        const tiles = document.querySelectorAll('.db-tile');
        for (let i = 0; i < tiles.length; i++) (tiles[i] as unknown as { mfMark: number }).mfMark = i;
      });
      const ticks0 = await page.evaluate(() => window.mfDashboard.ticks);
      await completions(serve.ready.url, serve.ready.model, Math.min(ranks, 40));
      await page.waitForFunction((t0) => window.mfDashboard.ticks >= t0 + 3, ticks0, { timeout: 20_000 });
      const kept = await page.evaluate(() => {
        const tiles = document.querySelectorAll('.db-tile');
        let n = 0;
        for (let i = 0; i < tiles.length; i++) if ((tiles[i] as unknown as { mfMark?: number }).mfMark === i) n++;
        return n;
      });
      assert.equal(kept, ranks, 'ticks update the existing tile nodes instead of re-creating them');
      assert.equal(await page.locator('.db-dense').count(), ranks > 512 ? 1 : 0, 'dense cells above 512 ranks');
      if (ranks > 512) {
        // No stall: the page answers at once and keeps taking ticks at 2 Hz.
        const t0 = Date.now();
        const before = await page.evaluate(() => window.mfDashboard.ticks);
        assert.ok(Date.now() - t0 < 1000, `the page answered an evaluate in ${Date.now() - t0} ms`);
        await page.waitForFunction((b) => window.mfDashboard.ticks >= b + 4, before, { timeout: 10_000 });
        // Hovering a cell still shows that rank's numbers.
        await page.locator('.db-tile[data-rank="4000"]').hover();
        assert.match((await page.locator('#db-tip').textContent()) ?? '', /rank 4000/);
      }
      assert.deepEqual(problems, []);
    } finally {
      if (browser !== null) await browser.close();
      if (serve !== null) {
        const code = await serve.stop('SIGTERM');
        assert.equal(code, 0, `serve exits 0 on SIGTERM; stderr:\n${serve.stderr()}`);
      }
    }
  });
}
