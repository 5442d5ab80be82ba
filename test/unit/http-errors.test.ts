import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { InvalidRequestError, RankFailedError } from '../../src/util/errors.js';
import { startFakeServer } from '../support/fake-backend.js';

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

async function call(url: string, path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<Reply> {
  const body = init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
  const res = await fetch(url + path, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers: init.headers ?? {}, body: body ?? null });
  const text = await res.text();
  let json: unknown = null;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) json = JSON.parse(text);
  return { status: res.status, headers: res.headers, text, json };
}

function assertError(r: Reply, status: number, code: string | null, param?: string | null): void {
  assert.equal(r.status, status, r.text);
  const e = (r.json as { error?: { message: unknown; type: unknown; param: unknown; code: unknown } }).error;
  assert.ok(e !== undefined, `error body expected, got ${r.text}`);
  assert.equal(typeof e.message, 'string');
  assert.equal(typeof e.type, 'string');
  if (code !== null) assert.equal(e.code, code);
  if (param !== undefined) assert.equal(e.param, param);
}

const chat = (extra: Record<string, unknown> = {}) => ({ model: 'fake-model', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 2, ...extra });

test('http errors - api key is required on /v1 routes and answers 401 invalid_api_key', async () => {
  const { server, url, backend } = await startFakeServer({}, { errorFormat: 'openai', apiKey: 'sk-test' });
  try {
    assertError(await call(url, '/v1/chat/completions', { body: chat() }), 401, 'invalid_api_key');
    assertError(await call(url, '/v1/chat/completions', { body: chat(), headers: { authorization: 'Bearer wrong' } }), 401, 'invalid_api_key');
    assertError(await call(url, '/v1/models'), 401, 'invalid_api_key');
    assert.equal(backend.submitted.length, 0);
    const ok = await call(url, '/v1/chat/completions', { body: chat(), headers: { authorization: 'Bearer sk-test' } });
    assert.equal(ok.status, 200);
    assert.equal((await call(url, '/health')).status, 200, '/health stays open');
  } finally {
    await server.close();
  }
});

test('http errors - bodies over max body bytes answer 413 and the connection keeps serving', async () => {
  const { server, url } = await startFakeServer({}, { errorFormat: 'openai', maxBodyBytes: 1024 });
  try {
    const big = chat({ messages: [{ role: 'user', content: 'x '.repeat(2000) }] });
    assertError(await call(url, '/v1/chat/completions', { body: big }), 413, 'request_too_large');
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(url + '/v1/completions', { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write('y'.repeat(500));
      req.end();
    });
    assert.equal(chunked.status, 413);
    assert.equal((JSON.parse(chunked.body) as { error: { code: string } }).error.code, 'request_too_large');
    assert.equal((await call(url, '/v1/chat/completions', { body: chat() })).status, 200);
  } finally {
    await server.close();
  }
});

test('http errors - invalid fields answer 400 naming the parameter', async () => {
  const { server, url, backend } = await startFakeServer({}, { errorFormat: 'openai' });
  try {
    const cases: [Record<string, unknown>, string][] = [
      [chat({ n: 0 }), 'n'],
      [chat({ n: 1025 }), 'n'],
      [chat({ stop: [''] }), 'stop'],
      [chat({ top_logprobs: 3 }), 'top_logprobs'],
      [chat({ logprobs: true, top_logprobs: 21 }), 'top_logprobs'],
      [chat({ min_tokens: 9, max_tokens: 4 }), 'min_tokens'],
      [chat({ stream_options: { include_usage: true } }), 'stream_options'],
      [chat({ seed: 2 ** 64 }), 'seed'],
      [chat({ max_tokens: '5' }), 'max_tokens'],
      [chat({ max_tokens: 0 }), 'max_tokens'],
      [chat({ max_tokens: 1.5 }), 'max_tokens'],
      [chat({ stream: 'yes' }), 'stream'],
      [chat({ stream_options: { include_usage: 1 } }), 'stream_options.include_usage'],
      [chat({ messages: 'hi' }), 'messages'],
      [chat({ messages: [] }), 'messages'],
      [chat({ messages: [{ role: 'robot', content: 'x' }] }), 'messages[0].role'],
      [chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }), 'messages[0].content[0].type'],
      [chat({ model: 7 }), 'model'],
      [chat({ ignore_eos: 'no' }), 'ignore_eos'],
    ];
    for (const [body, param] of cases) assertError(await call(url, '/v1/chat/completions', { body }), 400, 'invalid_request', param);
    const prompts: unknown[] = [undefined, '', [], ['a', ''], [[1], [-2]], [1, -1], [1, 2.5], [{}], 5];
    assertError(await call(url, '/v1/completions', { body: { prompt: 'x', suffix: 'y' } }), 400, 'invalid_request', 'suffix');
    assertError(await call(url, '/v1/completions', { body: { prompt: 'x', logprobs: 21 } }), 400, 'invalid_request', 'logprobs');
    assertError(await call(url, '/v1/completions', { body: { prompt: ['a', 'b', 'c'], n: 400 } }), 400, 'invalid_request', 'n');
    for (const prompt of prompts) {
      assertError(await call(url, '/v1/completions', { body: { model: 'fake-model', prompt, max_tokens: 1 } }), 400, 'invalid_request', 'prompt');
    }
    assertError(await call(url, '/v1/completions', { body: '{"prompt": "x", "max_tokens": 1e400}' }), 400, 'invalid_request', 'max_tokens');
    assertError(await call(url, '/v1/completions', { body: '[1,2]' }), 400, 'invalid_request');
    assertError(await call(url, '/v1/completions', { body: '{"prompt": "x"' }), 400, 'invalid_request');
    assert.equal(backend.submitted.length, 0, 'nothing invalid reaches the backend');
  } finally {
    await server.close();
  }
});

test('http errors - unknown routes, wrong methods and unknown models use OpenAI error JSON', async () => {
  const { server, url } = await startFakeServer({}, { errorFormat: 'openai' });
  try {
    assertError(await call(url, '/v2/everything'), 404, 'not_found');
    const r = await call(url, '/v1/chat/completions');
    assertError(r, 405, 'method_not_allowed');
    assert.equal(r.headers.get('allow'), 'POST');
    assertError(await call(url, '/v1/chat/completions', { body: chat({ model: 'gpt-4' }) }), 404, 'model_not_found', 'model');
    const noModel = await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 } });
    assert.equal((noModel.json as { model: string }).model, 'fake-model', 'a missing model means the first served name');
  } finally {
    await server.close();
  }
});

test('http errors - prompts that cannot fit max_model_len answer 400 context_length_exceeded before submit', async () => {
  const { server, url, backend } = await startFakeServer({}, { errorFormat: 'openai', maxModelLen: 64 });
  try {
    assertError(await call(url, '/v1/completions', { body: { prompt: Array.from({ length: 64 }, (_, i) => i), max_tokens: 1 } }), 400, 'context_length_exceeded', 'prompt');
    assertError(await call(url, '/v1/completions', { body: { prompt: Array.from({ length: 60 }, (_, i) => i), max_tokens: 5 } }), 400, 'context_length_exceeded', 'max_tokens');
    assertError(await call(url, '/v1/chat/completions', { body: chat({ max_tokens: undefined, max_completion_tokens: 60 }) }), 400, 'context_length_exceeded', 'max_completion_tokens');
    assert.equal(backend.submitted.length, 0);
    const fits = await call(url, '/v1/completions', { body: { prompt: Array.from({ length: 60 }, (_, i) => i), max_tokens: 4 } });
    assert.equal(fits.status, 200);
    const dflt = await call(url, '/v1/chat/completions', { body: chat({ max_tokens: undefined }) });
    const usage = (dflt.json as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    assert.equal(usage.prompt_tokens + usage.completion_tokens, 64, 'chat without max_tokens fills max_model_len');
  } finally {
    await server.close();
  }
});

test('http errors - a request larger than a rank\'s whole KV cache answers 400 before submit', async () => {
  // fake backend: 1024 blocks of 16 tokens = 16384 tokens per rank
  const { server, url, backend } = await startFakeServer({ maxModelLen: 100_000 }, { errorFormat: 'openai' });
  try {
    const r = await call(url, '/v1/completions', { body: { prompt: [1, 2, 3], max_tokens: 16_382 } });
    assertError(r, 400, 'context_length_exceeded', 'prompt');
    assert.match((r.json as { error: { message: string } }).error.message, /can never be scheduled/);
    assert.equal((await call(url, '/v1/completions', { body: { prompt: [1, 2, 3], max_tokens: 16_381 } })).status, 200);
    assert.equal(backend.submitted.length, 1);
  } finally {
    await server.close();
  }
});

test('http errors - backend overload answers 429 and backend errors keep their status', { timeout: 30_000 }, async () => {
  const { server, url, backend } = await startFakeServer({ maxLive: 1, stallAfter: 1 }, { errorFormat: 'openai' });
  try {
    const ac = new AbortController();
    const first = await fetch(url + '/v1/completions', { method: 'POST', body: JSON.stringify({ prompt: 'a', max_tokens: 5, stream: true }), signal: ac.signal });
    assert.equal(first.status, 200);
    const r = await call(url, '/v1/completions', { body: { prompt: 'b', max_tokens: 1 } });
    assertError(r, 429, 'MOCKFLEET_ERR_OVERLOADED');
    assert.equal((r.json as { error: { type: string } }).error.type, 'rate_limit_error');
    ac.abort();
    await backend.whenIdle();
    assert.equal(backend.liveCount, 0);
  } finally {
    await server.close();
  }
  const failing = await startFakeServer({ failWith: new RankFailedError(1, 'thread exited') }, { errorFormat: 'openai' });
  try {
    const r = await call(failing.url, '/v1/completions', { body: { prompt: 'b', max_tokens: 3 } });
    assertError(r, 503, 'MOCKFLEET_ERR_RANK_FAILED');
    const s = await call(failing.url, '/v1/completions', { body: { prompt: 'b', max_tokens: 3, stream: true } });
    assert.equal(s.status, 200);
    assert.match(s.text, /data: \{"error":\{"message":"rank 1: thread exited"/);
    assert.ok(s.text.endsWith('data: [DONE]\n\n'));
  } finally {
    await failing.server.close();
  }
  const refusing = await startFakeServer({}, { errorFormat: 'openai' });
  refusing.backend.submit = () => {
    throw new InvalidRequestError('prompt needs more blocks than the cache has', 'prompt');
  };
  try {
    assertError(await call(refusing.url, '/v1/completions', { body: { prompt: 'b', max_tokens: 3 } }), 400, 'MOCKFLEET_ERR_INVALID_REQUEST', 'prompt');
  } finally {
    await refusing.server.close();
  }
});

test('http errors - X-Return-Error forces that status without reaching the backend', async () => {
  const { server, url, backend } = await startFakeServer({}, { errorFormat: 'openai' });
  try {
    const expected: [string, number, string][] = [['429', 429, 'rate_limit_exceeded'], ['401', 401, 'invalid_api_key'], ['404', 404, 'model_not_found'],
      ['503', 503, 'server_error'], ['400', 400, 'invalid_request'], ['500', 500, 'http_500'], ['418', 418, 'http_418']];
    for (const [header, status, code] of expected) {
      assertError(await call(url, '/v1/chat/completions', { body: chat(), headers: { 'x-return-error': header } }), status, code);
    }
    assertError(await call(url, '/v1/chat/completions', { body: chat(), headers: { 'x-return-error': 'teapot' } }), 400, 'invalid_request', 'X-Return-Error');
    assertError(await call(url, '/v1/chat/completions', { body: chat(), headers: { 'x-return-error': '200' } }), 400, 'invalid_request', 'X-Return-Error');
    assert.equal(backend.submitted.length, 0);
  } finally {
    await server.close();
  }
});

test('http errors - failure injection at 100 percent always answers the one configured type', async () => {
  const { server, url, backend } = await startFakeServer({}, { errorFormat: 'openai', failureRate: 100, failureTypes: ['server_error'] });
  try {
    for (let i = 0; i < 20; i++) assertError(await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 } }), 503, 'server_error');
    assert.equal(backend.submitted.length, 0);
  } finally {
    await server.close();
  }
});

test('http errors - seeded failure injection at 50 percent is reproducible', async () => {
  const statuses: number[][] = [];
  for (let run = 0; run < 2; run++) {
    const { server, url } = await startFakeServer({}, { errorFormat: 'openai', failureRate: 50, failureTypes: ['rate_limit', 'model_not_found'], seed: 42 });
    const seen: number[] = [];
    try {
      for (let i = 0; i < 40; i++) seen.push((await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 } })).status);
    } finally {
      await server.close();
    }
    statuses.push(seen);
  }
  assert.deepEqual(statuses[0], statuses[1]);
  const ok = statuses[0]?.filter((s) => s === 200).length ?? 0;
  assert.ok(ok > 5 && ok < 35, `about half succeed, got ${ok}/40`);
  assert.ok(statuses[0]?.includes(429) && statuses[0].includes(404), 'both configured types occur');
});

test('http errors - /health/ready answers 503 until the backend is ready', async () => {
  const { server, url, backend } = await startFakeServer({ ready: false }, { errorFormat: 'openai' });
  try {
    assertError(await call(url, '/health/ready'), 503, 'not_ready');
    assert.equal((await call(url, '/health')).status, 200);
    backend.ready = true;
    assert.equal((await call(url, '/health/ready')).status, 200);
  } finally {
    await server.close();
  }
});

test('http errors - /tokenize answers the vLLM shape for text, token ids and messages', async () => {
  const { server, url } = await startFakeServer({}, { errorFormat: 'openai', maxModelLen: 2048 });
  try {
    const r = await call(url, '/tokenize', { body: { prompt: 'Hello, world!' } });
    assert.equal(r.status, 200);
    const j = r.json as { count: number; max_model_len: number; tokens: number[] };
    assert.equal(j.count, 4);
    assert.equal(j.tokens.length, 4);
    assert.equal(j.max_model_len, 2048);
    const ids = (await call(url, '/tokenize', { body: { prompt: [9, 8, 7] } })).json as { tokens: number[] };
    assert.deepEqual(ids.tokens, [9, 8, 7]);
    const msgs = (await call(url, '/tokenize', { body: { messages: [{ role: 'user', content: 'hi' }] } })).json as { count: number };
    assert.ok(msgs.count > 1);
    assertError(await call(url, '/tokenize', { body: { prompt: 'x', model: 'other' } }), 404, 'model_not_found');
  } finally {
    await server.close();
  }
});

test('http errors - a per-worker endpoint pins requests and metrics to its worker', async () => {
  const { server, url, backend } = await startFakeServer({ numWorkers: 2, ranksPerWorker: 2 }, { errorFormat: 'openai', workerIndex: 1 });
  try {
    const m = await call(url, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /worker="1"/);
    assert.deepEqual(backend.metricsCalls, [1]);
    assert.equal((await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 } })).status, 200);
    assert.equal((await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 }, headers: { 'x-mockfleet-rank': '3' } })).status, 200);
    assert.equal(backend.submitted[0]?.workerIndex, 1);
    assert.equal(backend.submitted[1]?.pinnedRank, 3);
    assertError(await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 }, headers: { 'x-mockfleet-rank': '0' } }), 400, 'invalid_request', 'X-Mockfleet-Rank');
    assertError(await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 }, headers: { 'x-mockfleet-rank': '4' } }), 400, 'invalid_request', 'X-Mockfleet-Rank');
    assertError(await call(url, '/v1/completions', { body: { prompt: 'x', max_tokens: 1 }, headers: { 'x-mockfleet-rank': 'one' } }), 400, 'invalid_request', 'X-Mockfleet-Rank');
  } finally {
    await server.close();
  }
});
