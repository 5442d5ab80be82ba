import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startFakeServer } from '../support/fake-backend.js';

/** Wraps res.write/res.end of every response to count socket writes that carry data. */
function writeCounter(): { hook: (req: IncomingMessage, res: ServerResponse) => boolean; writes: number[]; backpressured: number[] } {
  const writes: number[] = [];
  const backpressured: number[] = [];
  const hook = (_req: IncomingMessage, res: ServerResponse): boolean => {
    const idx = writes.length;
    writes.push(0);
    backpressured.push(0);
    const write = res.write.bind(res) as (chunk: string) => boolean;
    const end = res.end.bind(res) as (chunk?: string) => ServerResponse;
    (res as unknown as { write: (chunk: string) => boolean }).write = (chunk: string) => {
      writes[idx] = (writes[idx] ?? 0) + 1;
      const ok = write(chunk);
      if (!ok) backpressured[idx] = (backpressured[idx] ?? 0) + 1;
      return ok;
    };
    (res as unknown as { end: (chunk?: string) => ServerResponse }).end = (chunk?: string) => {
      if (chunk !== undefined && chunk.length > 0) writes[idx] = (writes[idx] ?? 0) + 1;
      return end(chunk);
    };
    return false;
  };
  return { hook, writes, backpressured };
}

function countEvents(text: string): { content: number; done: boolean } {
  let content = 0;
  for (const line of text.split('\n\n')) {
    if (!line.startsWith('data: {')) continue;
    const ev = JSON.parse(line.slice(6)) as { choices: { delta?: { content?: string }; text?: string }[] };
    const c = ev.choices[0];
    const t = c?.delta?.content ?? c?.text;
    if (t !== undefined && t.length > 0) content++;
  }
  return { content, done: text.endsWith('data: [DONE]\n\n') };
}

test('http streaming - tokens ready in one event-loop turn leave in one socket write', { timeout: 60_000 }, async () => {
  const counter = writeCounter();
  const { server, url, backend } = await startFakeServer({ tokensPerPass: 4, passesPerTurn: 3 }, { extraRoutes: counter.hook });
  try {
    const res = await fetch(url + '/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ messages: [{ role: 'user', content: 'go' }], max_tokens: 120, stream: true, stream_options: { include_usage: true } }),
    });
    const text = await res.text();
    assert.equal(countEvents(text).content, 120);
    assert.ok(countEvents(text).done);
    assert.equal(backend.onTokensCalls, 30, '120 tokens in 30 onTokens calls of 4');
    assert.equal(backend.deliveryTurns, 10, 'three calls per turn');
    const writes = counter.writes[0] ?? 0;
    // one write for the role chunk, one per delivery turn; the final events ride on the last one or end()
    assert.ok(writes <= backend.deliveryTurns + 2, `writes ${writes} must not exceed delivery turns ${backend.deliveryTurns} + 2`);
    assert.ok(writes < backend.onTokensCalls, 'several onTokens calls share one write');
  } finally {
    await server.close();
  }
});

test('http streaming - a slow reader loses nothing when res.write reports backpressure', { timeout: 60_000 }, async () => {
  const counter = writeCounter();
  const { server, url, backend } = await startFakeServer({ tokensPerPass: 2000, maxModelLen: 100_000, numGpuBlocks: 4096 }, { extraRoutes: counter.hook });
  try {
    const body = JSON.stringify({ prompt: 'go', max_tokens: 30_000, stream: true });
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url + '/v1/completions', { method: 'POST' }, resolve);
      req.on('error', reject);
      req.end(body);
    });
    assert.equal(res.statusCode, 200);
    res.pause();
    await backend.whenIdle();
    assert.ok((counter.backpressured[0] ?? 0) > 0, 'the unread socket filled up and res.write returned false');
    res.setEncoding('utf8');
    let text = '';
    res.on('data', (c: string) => (text += c));
    res.resume();
    await new Promise((resolve) => res.on('end', resolve));
    const ev = countEvents(text);
    assert.equal(ev.content, 30_000);
    assert.ok(ev.done);
  } finally {
    await server.close();
  }
});

/** Opens a streaming request, waits for the first content event, then destroys the socket. */
function openAndDrop(url: string, agent: Agent, path: string, body: string, stream: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url + path, { method: 'POST', agent }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`status ${res.statusCode}`));
        return;
      }
      res.on('data', (c: Buffer) => {
        if (c.toString().includes('"content":" ') || c.toString().includes('"text":" ')) {
          req.destroy();
          resolve();
        }
      });
    });
    req.on('error', (err) => {
      if (req.destroyed && (err as NodeJS.ErrnoException).code === 'ECONNRESET') return;
      reject(err);
    });
    req.end(body);
    if (!stream) setImmediate(() => {
      req.destroy();
      resolve();
    });
  });
}

test('http streaming - clients that disconnect mid-stream abort their requests on the backend', { timeout: 60_000 }, async () => {
  const { server, url, backend } = await startFakeServer({ stallAfter: 4, tokensPerPass: 2 });
  const agent = new Agent({ keepAlive: false, maxSockets: 64 });
  try {
    const n = 300;
    const pending: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const chatReq = i % 2 === 0;
      const body = chatReq
        ? JSON.stringify({ messages: [{ role: 'user', content: `q${i}` }], max_tokens: 50, stream: true })
        : JSON.stringify({ prompt: `p${i}`, max_tokens: 50, stream: true });
      pending.push(openAndDrop(url, agent, chatReq ? '/v1/chat/completions' : '/v1/completions', body, true));
    }
    await Promise.all(pending);
    await backend.whenIdle();
    assert.equal(backend.submitted.length, n);
    assert.equal(backend.liveCount, 0, 'every dropped stream freed its backend request');
    assert.equal(backend.finishes.length, n);
    assert.ok(backend.finishes.every((f) => f.finish.reason === 'abort'), 'all finished by abort');
    assert.ok(backend.abortCalls >= n);
  } finally {
    agent.destroy();
    await server.close();
  }
});

test('http streaming - a non-streaming client that disconnects aborts its request', { timeout: 60_000 }, async () => {
  const { server, url, backend } = await startFakeServer({ stallAfter: 2 });
  try {
    const ac = new AbortController();
    const pending = fetch(url + '/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: 'x', max_tokens: 10 }), signal: ac.signal });
    while (backend.submitted.length === 0) await new Promise((r) => setImmediate(r));
    ac.abort();
    await assert.rejects(pending);
    await backend.whenIdle();
    assert.equal(backend.liveCount, 0);
    assert.equal(backend.finishes[0]?.finish.reason, 'abort');
  } finally {
    await server.close();
  }
});

test('http streaming - close lets in-flight streams finish within the grace period', { timeout: 60_000 }, async () => {
  const { server, url, backend } = await startFakeServer({ tokensPerPass: 1 });
  const res = await fetch(url + '/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: 'x', max_tokens: 200, stream: true }) });
  assert.equal(res.status, 200);
  const closed = server.close(30_000);
  const ev = countEvents(await res.text());
  assert.equal(ev.content, 200, 'the stream that was open when close() began completes');
  assert.ok(ev.done);
  await closed;
  assert.equal(backend.finishes[0]?.finish.reason, 'length');
  await assert.rejects(fetch(url + '/health'), 'no new connections after close');
});

test('http streaming - close(0) aborts streams still in flight', { timeout: 60_000 }, async () => {
  const { server, url, backend } = await startFakeServer({ stallAfter: 2 });
  const res = await fetch(url + '/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: 'x', max_tokens: 10, stream: true }) });
  assert.equal(res.status, 200);
  await server.close(0);
  await backend.whenIdle();
  assert.equal(backend.liveCount, 0);
  await assert.rejects(res.text());
});
