/**
 * The vLLM HTTP surface against the real fleet (rank threads, engine), from the CLI: seeded
 * output identical on every rank, exact re-tokenisation with a byte-level tokenizer.json,
 * parallel sampling, and a stray MOCKFLEET_* variable that must not stop serve.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { loadTokenizer } from '../../src/tokenizer/tokenizer.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { startServe } from '../support/serve-process.js';
import type { ServeProcess } from '../support/serve-process.js';

const FIXTURE = new URL('../../../test/fixtures/bytelevel-bpe/tokenizer.json', import.meta.url).pathname;

let serve: ServeProcess;
let client: OpenAI;
let tokenizer: Tokenizer;

before(async () => {
  tokenizer = await loadTokenizer(FIXTURE);
  serve = await startServe(['--num-workers', '2', '--speedup-ratio', '0', '--tokenizer', FIXTURE, '--max-model-len', '4096'], 30_000, { MOCKFLEET_DIR: '/tmp/elsewhere' });
  client = new OpenAI({ baseURL: `${serve.ready.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  assert.equal(await serve.stop(), 0, serve.stderr());
});

test('serve api - a MOCKFLEET_* variable naming no flag is ignored with one warning', () => {
  const warnings = serve.stderr().split('\n').filter((l) => l.includes('MOCKFLEET_DIR'));
  assert.equal(warnings.length, 1, serve.stderr());
  assert.match(warnings[0] as string, /warning: ignoring environment variable MOCKFLEET_DIR/);
});

test('serve api - a seed gives identical text on two ranks, and 1024 tokens re-encode to exactly 1024', async () => {
  const body = { model: serve.ready.model, prompt: 'hello world', max_tokens: 1024, seed: 2024 };
  const a = await client.completions.create(body, { headers: { 'X-Mockfleet-Rank': '0' } });
  const b = await client.completions.create(body, { headers: { 'X-Mockfleet-Rank': '1' } });
  const text = a.choices[0]?.text ?? '';
  assert.equal(b.choices[0]?.text, text);
  assert.equal(a.usage?.completion_tokens, 1024);
  assert.equal(tokenizer.encode(text).length, 1024);
  const stream = await client.chat.completions.create({ model: serve.ready.model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1024, stream: true });
  let streamed = '';
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
  assert.equal(tokenizer.encode(streamed).length, 1024);
});

test('serve api - n=3 parallel samples on one rank, stop strings end the engine request', async () => {
  const res = await client.completions.create({ model: serve.ready.model, prompt: 'hello world', max_tokens: 32, n: 3, seed: 9 });
  assert.equal(res.choices.length, 3);
  assert.equal(res.usage?.completion_tokens, 96);
  const full = res.choices[0]?.text ?? '';
  const stopAt = full.indexOf(' ', 20);
  const stopWord = full.slice(stopAt, full.indexOf(' ', stopAt + 1));
  const stopped = await client.completions.create({ model: serve.ready.model, prompt: 'hello world', max_tokens: 32, seed: 9, stop: stopWord });
  assert.equal(stopped.choices[0]?.finish_reason, 'stop');
  assert.equal(stopped.choices[0]?.text, full.slice(0, full.indexOf(stopWord)));
  assert.ok((stopped.usage?.completion_tokens ?? 99) < 32);
});
