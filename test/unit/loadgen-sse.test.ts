import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseStreamParser } from '../../src/loadgen/sse.js';
import type { SseApi } from '../../src/loadgen/sse.js';
import { Rng } from '../../src/loadgen/rng.js';

const completionEvent = (text: string): string =>
  `data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":${JSON.stringify(text)},"logprobs":null,"finish_reason":null}]}\n\n`;
const usageEvent = 'data: {"id":"cmpl-1","object":"text_completion","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12,"prompt_tokens_details":{"cached_tokens":3}}}\n\n';

function stream(texts: string[]): string {
  return texts.map(completionEvent).join('') + completionEvent('') + usageEvent + 'data: [DONE]\n\n';
}

/** Feed `bytes` split at the given cut points; chunk k arrives at time k. */
function feed(api: SseApi, bytes: Buffer, cuts: number[]): SseStreamParser {
  const p = new SseStreamParser(api);
  let prev = 0;
  let t = 0;
  for (const c of [...cuts, bytes.length]) {
    if (c > prev) p.push(bytes.subarray(prev, c), t++);
    prev = c;
  }
  return p;
}

const TEXTS = [' Hello', ' "quoted" \\ text', ' {"text":"x"}', ' é', ' usage'];

test('loadgen sse - a whole stream in one chunk counts every non-empty content event and reads usage', () => {
  const p = feed('completions', Buffer.from(stream(TEXTS)), []);
  assert.equal(p.numContent, 5);
  assert.equal(p.done, true);
  assert.deepEqual(p.usage, { promptTokens: 7, completionTokens: 5, cachedTokens: 3 });
  assert.equal(p.streamError, null);
  assert.equal(p.pendingBytes, 0);
});

test('loadgen sse - byte-by-byte delivery gives the same counts and one gap per later content event', () => {
  const bytes = Buffer.from(stream(TEXTS));
  const cuts: number[] = [];
  for (let i = 1; i < bytes.length; i++) cuts.push(i);
  const p = feed('completions', bytes, cuts);
  assert.equal(p.numContent, 5);
  assert.equal(p.done, true);
  assert.deepEqual(p.usage, { promptTokens: 7, completionTokens: 5, cachedTokens: 3 });
  assert.equal(p.numGaps, 4, 'n content events give n - 1 gaps');
  assert.ok(p.firstContentMs < p.secondContentMs && p.secondContentMs <= p.lastContentMs, 'token times follow chunk arrival order');
});

test('loadgen sse - random splits never change the result (200 seeded splittings)', () => {
  const bytes = Buffer.from(stream(TEXTS));
  const rng = new Rng(42);
  for (let trial = 0; trial < 200; trial++) {
    const cuts = new Set<number>();
    const k = rng.int(1, 40);
    for (let i = 0; i < k; i++) cuts.add(rng.int(1, bytes.length));
    const p = feed('completions', bytes, [...cuts].sort((a, b) => a - b));
    assert.equal(p.numContent, 5, `trial ${trial}`);
    assert.equal(p.done, true, `trial ${trial}`);
    assert.equal(p.usage?.completionTokens, 5, `trial ${trial}`);
  }
});

test('loadgen sse - CRLF-delimited streams split byte by byte are parsed', () => {
  const bytes = Buffer.from(stream(TEXTS).replace(/\n/g, '\r\n'));
  const cuts: number[] = [];
  for (let i = 1; i < bytes.length; i++) cuts.push(i);
  const p = feed('completions', bytes, cuts);
  assert.equal(p.numContent, 5);
  assert.equal(p.done, true);
  assert.equal(p.usage?.promptTokens, 7);
});

test('loadgen sse - chat role-only and empty deltas are not tokens; comments and event lines are skipped', () => {
  const s =
    ': keep-alive\n\n' +
    'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n' +
    'event: message\ndata: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n' +
    'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"reasoning_content":"r"},"finish_reason":null}]}\n\n' +
    'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content": "there"},"finish_reason":null}]}\n\n' +
    'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n' +
    'data: [DONE]\n\n';
  const p = feed('chat', Buffer.from(s), []);
  assert.equal(p.numContent, 2);
  assert.equal(p.usage, null, 'usage: null is not a usage object');
  assert.equal(p.done, true);
});

test('loadgen sse - usage carried on the last content event is still read', () => {
  const s = completionEvent(' a') + completionEvent(' b') +
    'data: {"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" c","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}\n\n' +
    'data: [DONE]\n\n';
  const p = feed('completions', Buffer.from(s), []);
  assert.equal(p.numContent, 3);
  assert.equal(p.usage?.completionTokens, 3);
});

test('loadgen sse - an error object in the stream sets streamError', () => {
  const p = feed('completions', Buffer.from(completionEvent(' a') + 'data: {"error":{"message":"boom","type":"server_error"}}\n\n'), []);
  assert.match(p.streamError ?? '', /boom/);
  const q = feed('completions', Buffer.from('data: {"object":"error","message":"bad things"}\n\n'), []);
  assert.match(q.streamError ?? '', /bad things/);
  const r = feed('completions', Buffer.from('data: not json\n\n'), []);
  assert.match(r.streamError ?? '', /not JSON/);
});

test('loadgen sse - a cut stream leaves done false and the partial event pending', () => {
  const bytes = Buffer.from(stream(TEXTS));
  const p = new SseStreamParser('completions');
  p.push(bytes.subarray(0, 250), 0);
  assert.equal(p.done, false);
  assert.ok(p.pendingBytes > 0);
  p.reset();
  assert.equal(p.numContent, 0);
  assert.equal(p.pendingBytes, 0);
});
