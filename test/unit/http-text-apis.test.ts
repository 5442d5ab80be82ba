/**
 * /v1/responses through the official openai SDK, /v1/messages through the official Anthropic SDK,
 * /v1/embeddings and /detokenize, against the fake backend.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { renderChat } from '../../src/http/chat-template.js';
import { WordTokenizer } from '../../src/tokenizer/word-tokenizer.js';
import { GENERATED_WORDS } from '../../src/tokenizer/generated-words.js';
import { startFakeServer } from '../support/fake-backend.js';
import type { FakeBackend } from '../support/fake-backend.js';
import type { HttpServer } from '../../src/http/server.js';

let backend: FakeBackend;
let server: HttpServer;
let url: string;
let openai: OpenAI;
let anthropic: Anthropic;
const words = new WordTokenizer();

before(async () => {
  const started = await startFakeServer({ modelName: 'm', tokensPerPass: 4, cachedTokens: () => 2 }, { maxModelLen: 2048, embeddingDim: 64, apiKey: 'sk-x' });
  backend = started.backend;
  server = started.server;
  url = started.url;
  openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-x', maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: url, apiKey: 'sk-x', maxRetries: 0 });
});

after(async () => {
  await server.close();
});

test('http responses - client.responses.create answers a Response with output_text and usage', async () => {
  const r = await openai.responses.create({ model: 'm', input: 'Tell me a story', instructions: 'Be brief.', max_output_tokens: 12 });
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'incomplete');
  assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
  assert.equal(words.encode(r.output_text).length, 12);
  const prompt = words.encode(renderChat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me a story' }])).length;
  assert.deepEqual(r.usage, {
    input_tokens: prompt, input_tokens_details: { cached_tokens: 2 }, output_tokens: 12, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: prompt + 12,
  });
  assert.equal(backend.submitted.at(-1)?.promptTokens.length, prompt);
  const items = await openai.responses.create({
    model: 'm', max_output_tokens: 3,
    input: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'output_text', text: 'hello', annotations: [] }] }, { role: 'user', content: [{ type: 'input_text', text: 'again' }] }],
  } as OpenAI.Responses.ResponseCreateParamsNonStreaming);
  assert.equal(items.usage?.output_tokens, 3);
});

test('http responses - streaming sends typed events in order, one delta per token, then response.completed', async () => {
  const stream = await openai.responses.create({ model: 'm', input: 'hi', max_output_tokens: 7, stream: true });
  const types: string[] = [];
  let text = '';
  let seq = -1;
  let final: OpenAI.Responses.Response | null = null;
  for await (const ev of stream) {
    types.push(ev.type);
    assert.equal(ev.sequence_number, seq + 1);
    seq = ev.sequence_number;
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') final = ev.response;
  }
  assert.deepEqual(types.filter((t) => t !== 'response.output_text.delta'), [
    'response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
    'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed',
  ]);
  assert.equal(types.filter((t) => t === 'response.output_text.delta').length, 7);
  assert.equal(final?.usage?.output_tokens, 7);
  const msg = final?.output[0];
  assert.ok(msg?.type === 'message' && msg.content[0]?.type === 'output_text' && msg.content[0].text === text);
});

test('http messages - the Anthropic SDK: system prompt, usage, stop_reason max_tokens / stop_sequence', async () => {
  const m = await anthropic.messages.create({ model: 'm', max_tokens: 9, system: 'You are terse.', messages: [{ role: 'user', content: 'Hello' }] });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.stop_reason, 'max_tokens');
  const block = m.content[0];
  assert.ok(block?.type === 'text');
  assert.equal(words.encode(block.text).length, 9);
  const prompt = words.encode(renderChat([{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello' }])).length;
  assert.equal(m.usage.input_tokens + (m.usage.cache_read_input_tokens ?? 0), prompt);
  assert.equal(m.usage.cache_read_input_tokens, 2);
  assert.equal(m.usage.output_tokens, 9);
  // A stop sequence forced to occur: every word the tokenizer generates is one.
  const stops = GENERATED_WORDS.map((w) => ` ${w}`);
  const stopped = await anthropic.messages.create({ model: 'm', max_tokens: 40, messages: [{ role: 'user', content: [{ type: 'text', text: 'Go' }] }], stop_sequences: stops });
  assert.equal(stopped.stop_reason, 'stop_sequence');
  assert.ok(stops.includes(stopped.stop_sequence as string));
  assert.equal(stopped.usage.output_tokens, 1, 'the engine request ended at the first token');
  assert.ok(stopped.content[0]?.type === 'text' && stopped.content[0].text === '');
});

test('http messages - Anthropic streaming events and the Anthropic error shape', async () => {
  const stream = anthropic.messages.stream({ model: 'm', max_tokens: 6, messages: [{ role: 'user', content: 'Stream please' }] });
  const events: string[] = [];
  let text = '';
  stream.on('streamEvent', (e) => events.push(e.type));
  stream.on('text', (t) => (text += t));
  const final = await stream.finalMessage();
  assert.deepEqual(events.filter((e) => e !== 'content_block_delta'), ['message_start', 'content_block_start', 'content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(events.filter((e) => e === 'content_block_delta').length, 6);
  assert.equal(final.usage.output_tokens, 6);
  assert.ok(final.content[0]?.type === 'text' && final.content[0].text === text);
  await assert.rejects(
    anthropic.messages.create({ model: 'nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    (err: unknown) => err instanceof Anthropic.NotFoundError && (err.error as { error: { type: string } }).error.type === 'not_found_error',
  );
  const raw = await fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'sk-x' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }) });
  assert.equal(raw.status, 400);
  assert.deepEqual(await raw.json(), { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } });
  const denied = await fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'wrong' }, body: '{}' });
  assert.equal(denied.status, 401);
  assert.equal(((await denied.json()) as { error: { type: string } }).error.type, 'authentication_error');
});

test('http embeddings - deterministic unit vectors (float and base64), one prefill-only engine request per input', async () => {
  const before = backend.submitted.length;
  const r = await openai.embeddings.create({ model: 'm', input: ['hello world', 'hello world', 'other text'], encoding_format: 'float' });
  assert.equal(r.data.length, 3);
  const v = r.data[0]?.embedding as number[];
  assert.equal(v.length, 64);
  assert.ok(Math.abs(v.reduce((s, x) => s + x * x, 0) - 1) < 1e-5, 'unit length');
  assert.deepEqual(r.data[1]?.embedding, v, 'same input, same vector');
  assert.notDeepEqual(r.data[2]?.embedding, v);
  assert.equal(r.usage.prompt_tokens, 6);
  const subs = backend.submitted.slice(before);
  assert.deepEqual(subs.map((s) => s.maxTokens), [1, 1, 1]);
  // The SDK asks for base64 by default and decodes it.
  const b = await openai.embeddings.create({ model: 'm', input: 'hello world' });
  assert.deepEqual(Array.from(b.data[0]?.embedding as number[]).map((x) => Math.fround(x)), v.map((x) => Math.fround(x)));
  const short = await openai.embeddings.create({ model: 'm', input: 'hello world', dimensions: 8, encoding_format: 'float' });
  assert.equal(short.data[0]?.embedding.length, 8);
  await assert.rejects(openai.embeddings.create({ model: 'm', input: 'x', dimensions: 65 }), (err: unknown) => err instanceof OpenAI.BadRequestError);
});

test('http detokenize - /tokenize then /detokenize round-trips generated words', async () => {
  const text = ' river stone water';
  const tok = await (await fetch(`${url}/tokenize`, { method: 'POST', body: JSON.stringify({ prompt: text }) })).json() as { tokens: number[] };
  const de = await fetch(`${url}/detokenize`, { method: 'POST', body: JSON.stringify({ tokens: tok.tokens }) });
  assert.deepEqual(await de.json(), { prompt: text });
  const bad = await fetch(`${url}/detokenize`, { method: 'POST', body: JSON.stringify({ tokens: [1, -2] }) });
  assert.equal(bad.status, 400);
});
