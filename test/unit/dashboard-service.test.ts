import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { TickHub } from '../../src/dashboard/hub.js';
import type { Subscriber } from '../../src/dashboard/hub.js';
import { DashboardService } from '../../src/dashboard/service.js';
import { FakeSource, ManualClock, ManualTimers } from './dashboard-fake-source.js';

function collector(accept = true): Subscriber & { chunks: string[]; accept: boolean } {
  const s = {
    chunks: [] as string[],
    accept,
    write(chunk: string): boolean {
      s.chunks.push(chunk);
      return s.accept;
    },
  };
  return s;
}

test('dashboard - no tick timer runs while nobody is subscribed', () => {
  const timers = new ManualTimers();
  let builds = 0;
  const hub = new TickHub(() => `{"n":${++builds}}`, 500, timers);
  assert.equal(timers.count(), 0, 'no timer before the first subscriber');
  const a = collector();
  const b = collector();
  hub.add(a);
  assert.equal(timers.count(500), 1, 'the first subscriber starts the timer');
  hub.add(b);
  assert.equal(timers.count(500), 1, 'a second subscriber shares it');
  hub.remove(a);
  assert.equal(timers.count(500), 1, 'still one subscriber left');
  hub.remove(b);
  assert.equal(timers.count(), 0, 'the last subscriber leaving stops the timer');
  assert.equal(hub.running, false);
});

test('dashboard - one tick is built once and the same bytes go to every subscriber', () => {
  const timers = new ManualTimers();
  let builds = 0;
  const hub = new TickHub(() => `{"n":${++builds}}`, 500, timers);
  const subs = [collector(), collector(), collector()];
  for (const s of subs) hub.add(s);
  timers.fire(500);
  timers.fire(500);
  assert.equal(builds, 2, 'two ticks, two builds, whatever the number of subscribers');
  for (const s of subs) assert.deepEqual(s.chunks, ['event: tick\ndata: {"n":1}\n\n', 'event: tick\ndata: {"n":2}\n\n']);
});

test('dashboard - a backed-up subscriber skips ticks until its socket drains', () => {
  const timers = new ManualTimers();
  let n = 0;
  const hub = new TickHub(() => String(++n), 500, timers);
  const slow = collector(false);
  const fast = collector();
  hub.add(slow);
  hub.add(fast);
  timers.fire(500);
  timers.fire(500);
  timers.fire(500);
  assert.equal(slow.chunks.length, 1, 'after a refused write nothing more is queued');
  assert.equal(fast.chunks.length, 3);
  slow.accept = true;
  hub.drained(slow);
  timers.fire(500);
  assert.equal(slow.chunks.length, 2, 'writes resume after drain');
  assert.equal(hub.stats.skipped, 2);
});

async function withService<T>(fn: (url: string, svc: DashboardService, timers: ManualTimers, src: FakeSource) => Promise<T>): Promise<T> {
  const src = new FakeSource(2, 2);
  const timers = new ManualTimers();
  const svc = new DashboardService(src, { timers, now: new ManualClock().now });
  const server = createServer((req, res) => {
    if (!svc.route(req, res)) {
      res.writeHead(404).end('not mine');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    return await fn(url, svc, timers, src);
  } finally {
    svc.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Read SSE events from a fetch body until `want` events arrived. */
async function readEvents(body: ReadableStream<Uint8Array>, want: number, onEvent?: (n: number) => void): Promise<Array<{ event: string; data: string }>> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  const out: Array<{ event: string; data: string }> = [];
  while (out.length < want) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data.length > 0) {
        out.push({ event, data });
        onEvent?.(out.length);
      }
    }
  }
  await reader.cancel();
  return out;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

test('dashboard - the event stream starts with init, then shared ticks; closing it stops the timer', async () => {
  await withService(async (url, svc, timers) => {
    assert.equal(timers.count(1000), 1, 'the history sampler runs');
    assert.equal(timers.count(500), 0, 'no tick timer without a page');
    const ac = new AbortController();
    const res = await fetch(`${url}/dashboard/events`, { signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = await readEvents(res.body as ReadableStream<Uint8Array>, 2, (n) => {
      if (n === 1) timers.fire(500);
    });
    assert.equal(events[0]?.event, 'init');
    const init = JSON.parse(events[0]?.data ?? '') as { numRanks: number; workers: unknown[]; tick: { ranks: { kv: number[] } } };
    assert.equal(init.numRanks, 4);
    assert.equal(init.workers.length, 2);
    assert.equal(init.tick.ranks.kv.length, 4);
    assert.equal(events[1]?.event, 'tick');
    ac.abort();
    await until(() => svc.hub.size === 0, 'the server to notice the closed stream');
    assert.equal(timers.count(500), 0, 'tick timer stopped with the last page');
    assert.equal(timers.count(1000), 1, 'the sampler keeps running');
  });
});

test('dashboard - the page is one self-contained HTML document', async () => {
  await withService(async (url) => {
    const res = await fetch(`${url}/dashboard`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    const html = await res.text();
    assert.match(html, /<script>/);
    assert.doesNotMatch(html, /(src|href)\s*=\s*["']?(https?:)?\/\//i, 'no external scripts, styles or images');
    assert.doesNotMatch(html, /@import|url\(/i, 'no external CSS resources');
    const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1] as string);
    assert.equal(scripts.length, 2);
    for (const s of scripts) assert.doesNotThrow(() => new Function(s), 'inline scripts parse');
  });
});

test('dashboard - routes answer only /dashboard paths, with errors for the rest of its space', async () => {
  await withService(async (url) => {
    assert.equal((await fetch(`${url}/v1/models`)).status, 404);
    assert.equal(await (await fetch(`${url}/v1/models`)).text(), 'not mine', 'other paths fall through to the server');
    const missing = await fetch(`${url}/dashboard/nope`);
    assert.equal(missing.status, 404);
    // vLLM's error shape, like the server the dashboard is mounted on (default --error-format).
    assert.deepEqual(((await missing.json()) as { error: { code: number; type: string } }).error.code, 404);
    assert.equal((await fetch(`${url}/dashboard`, { method: 'POST' })).status, 405);
    const snap = await fetch(`${url}/dashboard/snapshot`);
    assert.equal(snap.status, 200);
    const doc = (await snap.json()) as { numRanks: number; placement: { ranks: unknown[] } };
    assert.equal(doc.numRanks, 4);
    assert.equal(doc.placement.ranks.length, 4);
  });
});

test('dashboard - close() ends open streams and stops every timer', async () => {
  await withService(async (url, svc, timers) => {
    const res = await fetch(`${url}/dashboard/events`);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await until(() => svc.hub.size === 1, 'the subscription');
    svc.close();
    assert.equal(timers.count(), 0);
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
    }
    const after = await fetch(`${url}/dashboard`);
    assert.equal(after.status, 503);
  });
});

test('dashboard - the stream limit answers 503 instead of piling up connections', async () => {
  const src = new FakeSource(1, 1);
  const timers = new ManualTimers();
  const svc = new DashboardService(src, { timers, maxSubscribers: 1 });
  const server = createServer((req, res) => void svc.route(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const first = await fetch(`${url}/dashboard/events`);
    await (first.body as ReadableStream<Uint8Array>).getReader().read();
    const second = await fetch(`${url}/dashboard/events`);
    assert.equal(second.status, 503);
  } finally {
    svc.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('dashboard - a tick rate outside (0, 10] Hz is refused', () => {
  assert.throws(() => new DashboardService(new FakeSource(1, 1), { tickHz: 0, timers: new ManualTimers() }), /tickHz/);
  assert.throws(() => new DashboardService(new FakeSource(1, 1), { tickHz: 50, timers: new ManualTimers() }), /tickHz/);
});
