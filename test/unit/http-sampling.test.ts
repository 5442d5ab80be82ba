/**
 * Sampling parameters through the official openai SDK against the fake backend (which generates
 * seeded tokens exactly like a rank: generatedTokenId(vocabulary, seed, k)).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { loadTokenizer } from '../../src/tokenizer/tokenizer.js';
import { WordTokenizer } from '../../src/tokenizer/word-tokenizer.js';
import { startFakeServer } from '../support/fake-backend.js';
import type { FakeBackend } from '../support/fake-backend.js';
import type { HttpServer } from '../../src/http/server.js';

const BYTELEVEL = new URL('../../../test/fixtures/bytelevel-bpe/tokenizer.json', import.meta.url).pathname;

let backend: FakeBackend;
let server: HttpServer;
let url: string;
let client: OpenAI;
const words = new WordTokenizer();

before(async () => {
  const started = await startFakeServer({ modelName: 'm', tokensPerPass: 5, numWorkers: 2, ranksPerWorker: 2 }, { maxModelLen: 4096 });
  backend = started.backend;
  server = started.server;
  url = started.url;
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
});

after(async () => {
  await server.close();
});

type Body = Record<string, unknown>;
/** vLLM-only fields are not in the SDK's types. */
function completion(body: Body, headers: Record<string, string> = {}): Promise<OpenAI.Completions.Completion> {
  return client.completions.create({ model: 'm', ...body } as unknown as OpenAI.Completions.CompletionCreateParamsNonStreaming, { headers });
}

test('http sampling - the same seed gives the same text and token ids on different ranks; another seed differs', async () => {
  const a = await completion({ prompt: 'Once upon a time', max_tokens: 40, seed: 1234 }, { 'X-Mockfleet-Rank': '0' });
  const b = await completion({ prompt: 'Once upon a time', max_tokens: 40, seed: 1234 }, { 'X-Mockfleet-Rank': '3' });
  const c = await completion({ prompt: 'Once upon a time', max_tokens: 40, seed: 1235 }, { 'X-Mockfleet-Rank': '0' });
  assert.equal(a.choices[0]?.text, b.choices[0]?.text);
  assert.notEqual(a.choices[0]?.text, c.choices[0]?.text);
  const ranks = backend.submitted.slice(-3).map((r) => r.pinnedRank);
  assert.deepEqual(ranks, [0, 3, 0]);
  assert.equal(words.encode(a.choices[0]?.text ?? '').length, 40);
  // Unseeded requests draw fresh seeds.
  const d = await completion({ prompt: 'Once upon a time', max_tokens: 40 });
  const e = await completion({ prompt: 'Once upon a time', max_tokens: 40 });
  assert.notEqual(d.choices[0]?.text, e.choices[0]?.text);
});

test('http sampling - a stop string cuts the text where it starts, ends the engine request there, and reports stop_reason', async () => {
  const full = (await completion({ prompt: 'x', max_tokens: 60, seed: 7 })).choices[0]?.text ?? '';
  const pieces = full.split(' ').slice(1).map((w) => ` ${w}`);
  const offsets: number[] = [];
  let at = 0;
  for (const p of pieces) {
    offsets.push(at);
    at += p.length;
  }
  // A token at index >= 10 whose text first occurs in the output right there (not inside an
  // earlier, longer word): the stop string is forced to occur, completed by token k.
  let k = 10;
  while (full.indexOf(pieces[k] as string) !== offsets[k]) k++;
  const stopWord = pieces[k] as string;
  const cut = full.indexOf(stopWord);
  const stopped = await completion({ prompt: 'x', max_tokens: 60, seed: 7, stop: [stopWord, 'never-occurs'] });
  const ch = stopped.choices[0];
  assert.equal(ch?.text, full.slice(0, cut));
  assert.equal(ch?.finish_reason, 'stop');
  assert.equal((ch as unknown as { stop_reason: unknown }).stop_reason, stopWord);
  assert.equal(stopped.usage?.completion_tokens, k + 1, 'the engine generated up to the token that completed the stop string');
  assert.equal(backend.submitted.at(-1)?.maxTokens, k + 1, 'the engine request itself was that long');
  const kept = await completion({ prompt: 'x', max_tokens: 60, seed: 7, stop: stopWord, include_stop_str_in_output: true });
  assert.equal(kept.choices[0]?.text, full.slice(0, cut + stopWord.length));
  // Streaming delivers the same cut text, then finish_reason "stop".
  const stream = await client.completions.create({ model: 'm', prompt: 'x', max_tokens: 60, seed: 7, stop: stopWord, stream: true });
  let text = '';
  let finish: string | null = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.text ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, full.slice(0, cut));
  assert.equal(finish, 'stop');
});

test('http sampling - stop_token_ids and min_tokens', async () => {
  const full = (await completion({ prompt: 'x', max_tokens: 30, seed: 99 })).choices[0]?.text ?? '';
  const ids = Array.from(words.encode(full));
  const target = ids[4] as number;
  const first = ids.indexOf(target);
  const stopped = await completion({ prompt: 'x', max_tokens: 30, seed: 99, stop_token_ids: [target] });
  assert.equal(stopped.usage?.completion_tokens, first + 1);
  assert.equal(stopped.choices[0]?.finish_reason, 'stop');
  assert.equal((stopped.choices[0] as unknown as { stop_reason: unknown }).stop_reason, target);
  assert.deepEqual(Array.from(words.encode(stopped.choices[0]?.text ?? '')), ids.slice(0, first + 1));
  const later = await completion({ prompt: 'x', max_tokens: 30, seed: 99, stop_token_ids: [target], min_tokens: first + 2 });
  const next = ids.indexOf(target, first + 1);
  assert.equal(later.usage?.completion_tokens, next === -1 ? 30 : next + 1, 'min_tokens suppresses earlier stops');
});

test('http sampling - n choices run on one rank with seeds seed+i; batched prompts get one choice set each', async () => {
  const before = backend.submitted.length;
  const res = await completion({ prompt: 'alpha beta', max_tokens: 6, n: 3, seed: 5 });
  assert.deepEqual(res.choices.map((c) => c.index), [0, 1, 2]);
  assert.equal(new Set(res.choices.map((c) => c.text)).size, 3, 'distinct samples');
  assert.deepEqual(res.usage, { prompt_tokens: 2, completion_tokens: 18, total_tokens: 20, prompt_tokens_details: { cached_tokens: 0 } });
  const subs = backend.submitted.slice(before);
  assert.equal(subs.length, 3);
  assert.equal(new Set(subs.map((s) => s.seed)).size, 3);
  assert.deepEqual(subs.map((s) => s.seed), [5, 6, 7]);
  assert.ok(subs[1]?.pinnedRank !== undefined && subs[1].pinnedRank === subs[2]?.pinnedRank, 'children 1.. pinned to the first child\'s rank');
  const single = await completion({ prompt: 'alpha beta', max_tokens: 6, seed: 6 });
  assert.equal(single.choices[0]?.text, res.choices[1]?.text, 'choice i uses seed + i');

  const batch = await completion({ prompt: ['one two', 'three four five'], max_tokens: 4, n: 2, seed: 1 });
  assert.deepEqual(batch.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.equal(batch.usage?.prompt_tokens, 5);
  assert.equal(batch.usage?.completion_tokens, 16);
  assert.equal(batch.choices[0]?.text, batch.choices[2]?.text, 'same seed, same sample for each prompt');
  const ids = await completion({ prompt: [[11, 12, 13], [14, 15]], max_tokens: 2 });
  assert.equal(ids.usage?.prompt_tokens, 5);

  // Streaming n=2: every content chunk names its choice; each choice ends with its own finish chunk.
  const stream = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, n: 2, stream: true, stream_options: { include_usage: true } });
  const texts = ['', ''];
  const finishes: string[] = [];
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      texts[c.index] += c.delta.content ?? '';
      if (c.finish_reason !== null) finishes.push(`${c.index}:${c.finish_reason}`);
    }
    usage = chunk.usage ?? usage;
  }
  assert.deepEqual(texts.map((t) => words.encode(t).length), [5, 5]);
  assert.deepEqual(finishes.sort(), ['0:length', '1:length']);
  assert.equal(usage?.completion_tokens, 10);
});

test('http sampling - logprobs in the completions and chat shapes: sorted, distinct, the sampled token first', async () => {
  const res = await completion({ prompt: 'x', max_tokens: 8, logprobs: 3, seed: 3 });
  const lp = res.choices[0]?.logprobs;
  assert.ok(lp !== null && lp !== undefined);
  assert.equal(lp.tokens?.length, 8);
  assert.equal((lp.tokens ?? []).join(''), res.choices[0]?.text);
  assert.equal(lp.text_offset?.[0], 0);
  assert.equal(lp.text_offset?.[1], lp.tokens?.[0]?.length);
  for (let i = 0; i < 8; i++) {
    const top = lp.top_logprobs?.[i] as Record<string, number>;
    const values = Object.values(top);
    assert.equal(values.length, 3);
    assert.deepEqual([...values].sort((a, b) => b - a), values, 'sorted');
    assert.equal(top[lp.tokens?.[i] as string], lp.token_logprobs?.[i]);
    assert.ok((lp.token_logprobs?.[i] as number) <= 0);
  }
  const again = await completion({ prompt: 'x', max_tokens: 8, logprobs: 3, seed: 3 });
  assert.deepEqual(again.choices[0]?.logprobs, lp, 'deterministic');

  const chat = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 6, logprobs: true, top_logprobs: 4 });
  const content = chat.choices[0]?.logprobs?.content ?? [];
  assert.equal(content.length, 6);
  assert.equal(content.map((c) => c.token).join(''), chat.choices[0]?.message.content);
  for (const c of content) {
    assert.equal(c.top_logprobs.length, 4);
    assert.equal(new Set(c.top_logprobs.map((t) => t.token)).size, 4, 'distinct');
    assert.equal(c.top_logprobs[0]?.token, c.token);
    assert.deepEqual(c.bytes, Array.from(Buffer.from(c.token)));
    for (let i = 1; i < 4; i++) assert.ok((c.top_logprobs[i] as { logprob: number }).logprob < (c.top_logprobs[i - 1] as { logprob: number }).logprob);
  }
  const stream = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, logprobs: true, stream: true });
  let entries = 0;
  for await (const chunk of stream) entries += chunk.choices[0]?.logprobs?.content?.length ?? 0;
  assert.equal(entries, 3);
  const plain = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 });
  assert.equal(plain.choices[0]?.logprobs, null);
});

test('http sampling - echo prepends the prompt (non-streaming and streaming)', async () => {
  const res = await completion({ prompt: 'Hello there', max_tokens: 3, echo: true, seed: 1 });
  const plain = await completion({ prompt: 'Hello there', max_tokens: 3, seed: 1 });
  assert.equal(res.choices[0]?.text, 'Hello there' + (plain.choices[0]?.text ?? ''));
  const stream = await client.completions.create({ model: 'm', prompt: 'Hello there', max_tokens: 3, echo: true, seed: 1, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, res.choices[0]?.text);
});

test('http sampling - omitted max_tokens: completions 16 (vLLM default), explicit null and chat up to the context limit', async () => {
  const c = await completion({ prompt: 'a b c' });
  assert.equal(c.usage?.completion_tokens, 16);
  const n = await completion({ prompt: 'a b c', max_tokens: null });
  assert.equal(n.usage?.completion_tokens, 4096 - 3);
});

test('http sampling - --eos-probability ends requests early with finish_reason stop unless ignore_eos', async () => {
  const eos = await startFakeServer({ tokensPerPass: 50 }, { eosProbability: 0.05 });
  try {
    const c = new OpenAI({ baseURL: `${eos.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const early = await c.completions.create({ model: 'fake-model', prompt: 'x', max_tokens: 1000, seed: 11 });
    const n = early.usage?.completion_tokens as number;
    assert.ok(n >= 1 && n < 1000, `ended after ${n} tokens`);
    assert.equal(early.choices[0]?.finish_reason, 'stop');
    assert.equal(words.encode(early.choices[0]?.text ?? '').length, n);
    const repeat = await c.completions.create({ model: 'fake-model', prompt: 'x', max_tokens: 1000, seed: 11 });
    assert.equal(repeat.usage?.completion_tokens, n, 'the EOS draw is seeded');
    const full = await c.completions.create({ model: 'fake-model', prompt: 'x', max_tokens: 1000, seed: 11, ignore_eos: true } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    assert.equal(full.usage?.completion_tokens, 1000);
    assert.equal(full.choices[0]?.finish_reason, 'length');
    const min = await c.completions.create({ model: 'fake-model', prompt: 'x', max_tokens: 1000, seed: 11, min_tokens: n + 1 } as OpenAI.Completions.CompletionCreateParamsNonStreaming);
    assert.ok((min.usage?.completion_tokens as number) > n);
  } finally {
    await eos.server.close();
  }
});

test('http sampling - 1024 generated tokens re-encode to exactly 1024 with the word and a byte-level BPE tokenizer', async () => {
  for (const tokenizer of [words, await loadTokenizer(BYTELEVEL)]) {
    const s = await startFakeServer({ tokensPerPass: 64 }, { tokenizer, maxModelLen: 8192 });
    try {
      const c = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const res = await c.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'hello world' }], max_tokens: 1024 });
      assert.equal(tokenizer.encode(res.choices[0]?.message.content ?? '').length, 1024, tokenizer.name);
      const stream = await c.completions.create({ model: 'fake-model', prompt: 'hello', max_tokens: 1024, stream: true });
      let text = '';
      let chunks = 0;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.text ?? '';
        chunks++;
      }
      assert.equal(chunks, 1025, 'one chunk per token plus the finish chunk');
      const reencoded = tokenizer.encode(text);
      assert.equal(reencoded.length, 1024, tokenizer.name);
      const vocab = new Set(tokenizer.generationVocabulary());
      assert.ok(Array.from(reencoded).every((id) => vocab.has(id)), 'the very ids the rank generated');
    } finally {
      await s.server.close();
    }
  }
});

test('http sampling - errors use vLLM\'s shape by default', async () => {
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x', n: 0 }) });
  assert.equal(r.status, 400);
  assert.deepEqual(await r.json(), { error: { message: 'n must be at least 1, got 0', type: 'BadRequestError', param: 'n', code: 400 } });
  const nf = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'x', model: 'nope' }) });
  assert.equal(nf.status, 404);
  const body = await nf.json() as { error: { type: string; code: number } };
  assert.equal(body.error.type, 'NotFoundError');
  assert.equal(body.error.code, 404);
  const m = await fetch(`${url}/v1/completions`);
  assert.equal(((await m.json()) as { error: { type: string } }).error.type, 'Method Not Allowed');
  await assert.rejects(
    client.completions.create({ model: 'm', prompt: 'x', suffix: 'y' }),
    (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'suffix' && err.type === 'BadRequestError',
  );
});
