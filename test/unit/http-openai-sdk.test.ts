import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { renderChat } from '../../src/http/chat-template.js';
import { WordTokenizer } from '../../src/tokenizer/word-tokenizer.js';
import { startFakeServer } from '../support/fake-backend.js';
import type { FakeBackend } from '../support/fake-backend.js';
import type { HttpServer } from '../../src/http/server.js';

let backend: FakeBackend;
let server: HttpServer;
let client: OpenAI;
const tokenizer = new WordTokenizer();

before(async () => {
  const started = await startFakeServer(
    { modelName: 'fleet-model', cachedTokens: (req) => Math.min(3, req.promptTokens.length), tokensPerPass: 3 },
    { servedModelNames: ['fleet-model', 'alias'], maxModelLen: 512, errorFormat: 'openai' },
  );
  backend = started.backend;
  server = started.server;
  client = new OpenAI({ baseURL: `${started.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  await server.close();
});

test('http sdk - non-streaming chat returns one word per token and exact usage', async () => {
  const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hello, world!' }];
  const res = await client.chat.completions.create({ model: 'fleet-model', messages, max_tokens: 8 });
  const promptTokens = tokenizer.encode(renderChat(messages)).length;
  assert.equal(res.object, 'chat.completion');
  assert.equal(res.model, 'fleet-model');
  assert.equal(res.choices.length, 1);
  assert.equal(res.choices[0]?.finish_reason, 'length');
  assert.equal(res.choices[0]?.message.role, 'assistant');
  const content = res.choices[0]?.message.content ?? '';
  assert.equal(tokenizer.encode(content).length, 8, 'generated text re-encodes to exactly max_tokens tokens');
  assert.deepEqual(res.usage, {
    prompt_tokens: promptTokens,
    completion_tokens: 8,
    total_tokens: promptTokens + 8,
    prompt_tokens_details: { cached_tokens: 3 },
  });
});

test('http sdk - streaming chat sends a role chunk, one chunk per token, then usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'alias', messages: [{ role: 'user', content: [{ type: 'text', text: 'count' }, { type: 'text', text: 'tokens' }] }],
    max_completion_tokens: 25, stream: true, stream_options: { include_usage: true },
  });
  let contentChunks = 0;
  let text = '';
  let sawRole = false;
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.model, 'alias');
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (choice === undefined) continue;
    if (choice.delta.role === 'assistant') {
      assert.equal(contentChunks, 0, 'the role chunk comes first');
      sawRole = true;
    }
    const c = choice.delta.content;
    if (c !== undefined && c !== null && c.length > 0) {
      assert.equal(tokenizer.encode(c).length, 1, 'each content chunk carries exactly one token');
      contentChunks++;
      text += c;
    }
    if (choice.finish_reason !== null) finish = choice.finish_reason;
  }
  assert.ok(sawRole);
  assert.equal(contentChunks, 25);
  assert.equal(tokenizer.encode(text).length, 25);
  assert.equal(finish, 'length');
  assert.equal(usage?.completion_tokens, 25);
  assert.equal(usage?.prompt_tokens_details?.cached_tokens, 3);
  assert.equal(usage?.total_tokens, (usage?.prompt_tokens ?? 0) + 25);
});

test('http sdk - a token-id prompt counts exactly its ids as prompt tokens', async () => {
  const ids = Array.from({ length: 37 }, (_, i) => 5 + i * 11);
  const before = backend.submitted.length;
  const res = await client.completions.create({ model: 'fleet-model', prompt: ids, max_tokens: 5 });
  assert.equal(res.object, 'text_completion');
  assert.equal(res.usage?.prompt_tokens, 37);
  assert.equal(res.usage?.completion_tokens, 5);
  assert.equal(res.choices[0]?.finish_reason, 'length');
  assert.deepEqual(Array.from(backend.submitted[before]?.promptTokens ?? []), ids, 'the backend received the ids unchanged');
  const nested = await client.completions.create({ model: 'fleet-model', prompt: [ids], max_tokens: 1 });
  assert.equal(nested.usage?.prompt_tokens, 37);
});

test('http sdk - streaming completions yield one chunk per completion token', async () => {
  const stream = await client.completions.create({ model: 'fleet-model', prompt: 'Once upon a time', max_tokens: 40, stream: true, stream_options: { include_usage: true } });
  let contentChunks = 0;
  let completionTokens = -1;
  for await (const chunk of stream) {
    if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
    const t = chunk.choices[0]?.text;
    if (t !== undefined && t.length > 0) contentChunks++;
  }
  assert.equal(contentChunks, 40);
  assert.equal(completionTokens, 40);
});

test('http sdk - completions without max_tokens generate the documented default of 16', async () => {
  const res = await client.completions.create({ model: 'fleet-model', prompt: ['a single string in an array'] });
  assert.equal(res.usage?.completion_tokens, 16);
  assert.equal(res.usage?.prompt_tokens, 6);
});

test('http sdk - X-Request-Id is echoed and becomes the response id', async () => {
  const { data, response, request_id } = await client.chat.completions
    .create({ model: 'fleet-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }, { headers: { 'X-Request-Id': 'req-abc-123' } })
    .withResponse();
  assert.equal(response.headers.get('x-request-id'), 'req-abc-123');
  assert.equal(request_id, 'req-abc-123');
  assert.equal(data.id, 'chatcmpl-req-abc-123');
  const generated = await client.completions.create({ model: 'fleet-model', prompt: 'x', max_tokens: 1 }).withResponse();
  assert.match(generated.request_id ?? '', /^[0-9a-f-]{36}$/, 'a request id is generated when the client sends none');
});

test('http sdk - models.list reports every served name with max_model_len', async () => {
  const ids: string[] = [];
  for await (const m of client.models.list()) {
    ids.push(m.id);
    assert.equal((m as unknown as { max_model_len: number }).max_model_len, 512);
  }
  assert.deepEqual(ids, ['fleet-model', 'alias']);
});

test('http sdk - errors surface as typed SDK errors with OpenAI codes', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
    (err: unknown) => err instanceof OpenAI.NotFoundError && err.code === 'model_not_found' && err.param === 'model',
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'fleet-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 1, n: 0 }),
    (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'n',
  );
  await assert.rejects(
    client.completions.create({ model: 'fleet-model', prompt: 'x', max_tokens: 600 }),
    (err: unknown) => err instanceof OpenAI.BadRequestError && err.code === 'context_length_exceeded',
  );
});
