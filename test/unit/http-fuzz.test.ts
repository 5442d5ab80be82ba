import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { startFakeServer } from '../support/fake-backend.js';

/** mulberry32: the fuzz corpus is the same on every run. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function assertErrorJson(status: number, body: string, context: string): void {
  assert.ok(status >= 400 && status < 500, `${context}: expected 4xx, got ${status} ${body.slice(0, 200)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    assert.fail(`${context}: body is not JSON: ${body.slice(0, 200)}`);
  }
  const e = (parsed as { error?: Record<string, unknown> }).error;
  assert.ok(e !== undefined && typeof e === 'object', `${context}: no error object`);
  assert.equal(typeof e['message'], 'string', context);
  assert.equal(typeof e['type'], 'string', context);
  assert.ok('param' in e && 'code' in e, `${context}: param and code present`);
}

const BAD_VALUES: Record<string, unknown[]> = {
  model: [1, true, {}, [], 'no-such-model'],
  prompt: ['', [], [-1], [1.5], [1e20], ['a', ''], [[1], [-2]], {}, true, 3, [null], [[]], [[-3]], ['a', 5]],
  messages: ['hi', [], {}, [1], [{}], [{ role: 1 }], [{ role: 'user', content: 5 }], [{ role: 'user', content: [{ type: 'image_url' }] }],
    [{ role: 'user', content: [{ type: 'text', text: 3 }] }], [{ role: 'nobody', content: 'x' }], [null]],
  max_tokens: ['5', 0, -1, 1.5, true, {}, [], 1e300, Number.MAX_SAFE_INTEGER],
  max_completion_tokens: ['5', 0, -7, 2.5, false, 9007199254740993],
  n: [0, '1', 1.5, -3, 1025, 1e9],
  best_of: [3, 'x'],
  seed: ['1', 1.5, 1e30, {}, true],
  stop: [5, [''], [1], { a: 1 }, ''],
  stop_token_ids: ['x', [-1], [1.5], 7, [null]],
  include_stop_str_in_output: ['yes', 1],
  min_tokens: [-1, '2', 1.5, 1e9],
  logprobs: ['x', -1, 21, 2.5, {}],
  top_logprobs: [-1, 21, 'x', 1.5],
  temperature: ['hot', -1, {}],
  top_p: [2, 'x', -0.5],
  suffix: ['x', 1],
  stream: ['true', 1, {}, []],
  stream_options: ['x', 1, [], { include_usage: 'yes' }],
  ignore_eos: ['false', 0],
  echo: ['x', 1, {}],
};

function pick<T>(r: () => number, arr: readonly T[]): T {
  return arr[Math.floor(r() * arr.length)] as T;
}

/** One malformed body for /v1/completions or /v1/chat/completions. */
function malformedBody(r: () => number, chat: boolean): string {
  const kind = Math.floor(r() * 8);
  const base: Record<string, unknown> = chat
    ? { model: 'fake-model', messages: [{ role: 'user', content: 'hello' }], max_tokens: 3 }
    : { model: 'fake-model', prompt: 'hello', max_tokens: 3 };
  switch (kind) {
    case 0: {
      const len = Math.floor(r() * 600);
      let s = '';
      for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(r() * 256));
      return s.startsWith('{') ? 'x' + s : s;
    }
    case 1:
      return pick(r, ['1', '"str"', 'null', 'true', '[]', '[{"prompt":"x"}]', '', ' ', '\u0000', '{}']);
    case 2: {
      const keys = Object.keys(BAD_VALUES).filter((k) => (chat ? k !== 'prompt' && k !== 'echo' && k !== 'suffix' : k !== 'messages' && k !== 'max_completion_tokens' && k !== 'top_logprobs'));
      const key = pick(r, keys);
      const body = { ...base, [key]: pick(r, BAD_VALUES[key] as unknown[]) };
      if (key === 'max_completion_tokens') delete body['max_tokens'];
      return JSON.stringify(body);
    }
    case 3: {
      const depth = 500 + Math.floor(r() * 5000);
      return r() < 0.5 ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    }
    case 4: {
      // max_tokens must be >= 1, so -0 and 1e-400 (both parse to 0) are invalid there but valid token ids.
      if (chat) {
        const huge = pick(r, ['1e400', '-1e400', '123456789012345678901234567890', '-0', '1e-400', '4294967296e10']);
        return `{"messages":[{"role":"user","content":"x"}],"max_tokens":${huge}}`;
      }
      const huge = pick(r, ['1e400', '-1e400', '123456789012345678901234567890', '4294967296', '-1']);
      return `{"prompt":[${huge}],"max_tokens":1}`;
    }
    case 5: {
      const full = JSON.stringify(base);
      return full.slice(0, Math.floor(r() * (full.length - 1)));
    }
    case 6: {
      const body = { ...base };
      delete body[chat ? 'messages' : 'prompt'];
      return JSON.stringify(body);
    }
    default:
      return JSON.stringify(base).replace(/"max_tokens":3/, `"max_tokens":${pick(r, ['"3"', '[3]', '{"v":3}', 'null,"n":0', '3.25'])}`);
  }
}

function post(url: string, agent: Agent, path: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url + path, { method: 'POST', agent, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(Buffer.from(body, 'latin1'));
  });
}

/** Sends raw bytes on a fresh connection; resolves with what came back once the server closes or goes quiet. */
function raw(port: number, payload: string, endWrite: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => sock.destroy(), 2000);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return;
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    sock.write(payload, 'latin1');
    if (endWrite) sock.end();
  });
}

function parseRawResponse(text: string): { status: number; body: string } {
  const m = /^HTTP\/1\.1 (\d{3}) [^\r]*\r\n/.exec(text);
  assert.ok(m !== null, `raw response must start with a status line: ${JSON.stringify(text.slice(0, 120))}`);
  const headEnd = text.indexOf('\r\n\r\n');
  const head = text.slice(0, headEnd).toLowerCase();
  let body = text.slice(headEnd + 4);
  if (head.includes('transfer-encoding: chunked')) {
    let out = '';
    let rest = body;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, nl), 16);
      if (!(size > 0)) break;
      out += rest.slice(nl + 2, nl + 2 + size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    body = out;
  }
  return { status: Number(m[1]), body };
}

test('http fuzz - thousands of malformed bodies each get a well-formed 4xx error JSON', { timeout: 120_000 }, async () => {
  const { server, url, backend } = await startFakeServer({}, { errorFormat: 'openai', maxBodyBytes: 1 << 20 });
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const r = rng(20261127);
  try {
    const total = 3000;
    for (let batch = 0; batch < total; batch += 50) {
      const pending: Promise<void>[] = [];
      for (let i = batch; i < batch + 50; i++) {
        const chat = r() < 0.5;
        const body = malformedBody(r, chat);
        const path = chat ? '/v1/chat/completions' : '/v1/completions';
        pending.push(post(url, agent, path, body).then((res) => assertErrorJson(res.status, res.body, `#${i} ${path} ${JSON.stringify(body.slice(0, 120))}`)));
      }
      await Promise.all(pending);
    }
    const deep = 500_000;
    for (const body of ['['.repeat(deep) + ']'.repeat(deep), '{"a":'.repeat(deep / 5) + '1' + '}'.repeat(deep / 5)]) {
      const res = await post(url, agent, '/v1/completions', body);
      assertErrorJson(res.status, res.body, `nesting depth ${deep}`);
    }
    const tokenizeCases = ['{', '[]', '{"prompt":5}', '{"messages":"x"}', '{"prompt":[-1]}', '{}'];
    for (const body of tokenizeCases) {
      const res = await post(url, agent, '/tokenize', body);
      assertErrorJson(res.status, res.body, `/tokenize ${body}`);
    }
    assert.equal(backend.submitted.length, 0, 'no malformed request reached the backend');
    const ok = await post(url, agent, '/v1/completions', JSON.stringify({ prompt: 'still alive', max_tokens: 2 }));
    assert.equal(ok.status, 200);
  } finally {
    agent.destroy();
    await server.close();
  }
});

test('http fuzz - malformed headers and broken framing get 4xx error JSON or a closed socket', { timeout: 120_000 }, async () => {
  const { server, url, backend } = await startFakeServer({}, { errorFormat: 'openai', maxBodyBytes: 4096 });
  const port = server.port;
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  try {
    const body = '{"prompt":"x","max_tokens":1}';
    const answered: [string, boolean][] = [
      ['GARBAGE\r\n\r\n', true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n' + body, true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n' + body, true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n' + body, true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n' + body, true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n', true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Big: ' + 'a'.repeat(20_000) + '\r\n\r\n', true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n', true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n', true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{"prompt"', true],
      ['\x00\x01\x02\xff\xfe\r\n\r\n', true],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"prompt":"tru', false],
      ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"prompt"', false],
    ];
    for (const [payload, mustAnswer] of answered) {
      const text = await raw(port, payload, true);
      if (text.length === 0) {
        assert.equal(mustAnswer, false, `no answer for ${JSON.stringify(payload.slice(0, 80))}`);
        continue;
      }
      const res = parseRawResponse(text);
      assertErrorJson(res.status, res.body, `raw ${JSON.stringify(payload.slice(0, 80))}`);
    }
    const headerCases: Record<string, string>[] = [
      { 'x-request-id': 'a'.repeat(300) },
      { 'x-request-id': 'has space' },
      { 'x-mockfleet-rank': '-1' },
      { 'x-mockfleet-rank': '99' },
      { 'x-mockfleet-rank': '1e3' },
      { 'x-return-error': '99' },
      { 'x-return-error': '2000' },
      { 'content-type': 'text/plain', 'x-return-error': 'x' },
    ];
    for (const headers of headerCases) {
      const res = await post(url, agent, '/v1/completions', body, headers);
      assertErrorJson(res.status, res.body, `headers ${JSON.stringify(headers)}`);
    }
    const r = rng(7);
    for (let i = 0; i < 300; i++) {
      let junk = '';
      const len = 1 + Math.floor(r() * 300);
      for (let j = 0; j < len; j++) junk += String.fromCharCode(Math.floor(r() * 256));
      const text = await raw(port, junk + '\r\n\r\n', true);
      if (text.length === 0) continue;
      const res = parseRawResponse(text);
      assertErrorJson(res.status, res.body, `raw junk #${i}`);
    }
    assert.equal(backend.submitted.length, 0);
    const ok = await post(url, agent, '/v1/completions', body);
    assert.equal(ok.status, 200, 'the server still serves a valid request');
  } finally {
    agent.destroy();
    await server.close();
  }
});

const WRONG: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 2, '', 'x', 'x'.repeat(5000), [], [null], [1, 'a'], {}, { a: 1 }, [[]], [{}]];

/** Per endpoint: a valid body and the fields to break. */
const ENDPOINTS: Record<string, { base: Record<string, unknown>; fields: string[] }> = {
  '/v1/completions': { base: { prompt: 'hi', max_tokens: 2 }, fields: ['prompt', 'max_tokens', 'n', 'seed', 'stop', 'stop_token_ids', 'min_tokens', 'logprobs', 'echo', 'suffix', 'ignore_eos', 'include_stop_str_in_output', 'temperature', 'top_p', 'top_k', 'stream_options'] },
  '/v1/chat/completions': { base: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }, fields: ['messages', 'max_completion_tokens', 'n', 'seed', 'stop', 'logprobs', 'top_logprobs', 'min_tokens', 'stream'] },
  '/v1/responses': { base: { input: 'hi', max_output_tokens: 2 }, fields: ['input', 'instructions', 'max_output_tokens', 'stream', 'temperature', 'top_p', 'model', 'previous_response_id'] },
  '/v1/messages': { base: { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }, fields: ['messages', 'max_tokens', 'system', 'stop_sequences', 'stream', 'temperature', 'top_p', 'top_k', 'model'] },
  '/v1/embeddings': { base: { input: 'hi' }, fields: ['input', 'encoding_format', 'dimensions', 'model'] },
  '/detokenize': { base: { tokens: [1, 2] }, fields: ['tokens', 'model'] },
};

test('http fuzz - new fields and endpoints: wrong types and extreme values answer 4xx in the chosen format, never 500', { timeout: 120_000 }, async () => {
  const { server, url, backend } = await startFakeServer({}, { maxBodyBytes: 1 << 20, embeddingDim: 16 });
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  let rejected = 0;
  try {
    for (const [path, { base, fields }] of Object.entries(ENDPOINTS)) {
      const pending: Promise<void>[] = [];
      for (const field of fields) {
        for (const value of WRONG) {
          const body = JSON.stringify({ ...base, [field]: value });
          pending.push(post(url, agent, path, body).then((res) => {
            const context = `${path} ${field}=${JSON.stringify(value)?.slice(0, 40)}`;
            assert.ok(res.status < 500, `${context}: got ${res.status} ${res.body.slice(0, 200)}`);
            if (res.status < 400) return;
            rejected++;
            const parsed = JSON.parse(res.body) as { type?: string; error: Record<string, unknown> };
            if (path === '/v1/messages') {
              assert.equal(parsed.type, 'error', context);
              assert.equal(typeof parsed.error['type'], 'string', context);
              assert.equal(typeof parsed.error['message'], 'string', context);
            } else {
              assert.equal(parsed.error['code'], res.status, `${context}: vLLM's integer code`);
              assert.equal(typeof parsed.error['type'], 'string', context);
            }
          }));
        }
      }
      await Promise.all(pending);
    }
    assert.ok(rejected > 400, `${rejected} bodies rejected`);
    await backend.whenIdle();
  } finally {
    agent.destroy();
    await server.close();
  }
});
