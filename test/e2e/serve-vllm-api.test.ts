/**
 * The vLLM HTTP surface against the real fleet (rank threads, engine), from the CLI: seeded
 * output identical on every rank, exact re-tokenisation with a byte-level tokenizer.json,
 * parallel sampling, and a stray MOCKFLEET_* variable that must not stop serve.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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

function promtoolProblems(text: string): string[] {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  // vLLM's own names contain ':' and vllm:iteration_tokens_total is a histogram ending in _total.
  return `${r.stdout}${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l.length > 0).filter(
    (l) => !/^vllm:\S+ metric names should not contain ':'$/.test(l) && !/^vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix$/.test(l),
  );
}

function sum(text: string, re: RegExp): number {
  return [...text.matchAll(re)].reduce((s, m) => s + Number(m[1]), 0);
}

test('serve api - vLLM metric families: TPOT, n, stop finishes, prompt tokens by source, cache_config_info, OpenMetrics', async () => {
  // The requests of the tests above have finished: n=3 once, one stop-string request.
  const text = await (await fetch(serve.ready.metrics)).text();
  assert.ok(sum(text, /^vllm:request_time_per_output_token_seconds_count\{[^}]*\} (\d+)$/gm) >= 6, 'TPOT observed per finished request');
  assert.match(text, /^vllm:request_time_per_output_token_seconds_bucket\{[^}]*le="0\.01"\} \d+$/m);
  assert.equal(sum(text, /^vllm:request_params_n_bucket\{[^}]*le="5"\} (\d+)$/gm) - sum(text, /^vllm:request_params_n_bucket\{[^}]*le="2"\} (\d+)$/gm), 1, 'one n=3 request');
  assert.ok(sum(text, /^vllm:request_success_total\{[^}]*finished_reason="stop"\} (\d+)$/gm) >= 1);
  const computed = sum(text, /^vllm:prompt_tokens_by_source_total\{[^}]*source="local_compute"\} (\d+)$/gm);
  const hit = sum(text, /^vllm:prompt_tokens_by_source_total\{[^}]*source="local_cache_hit"\} (\d+)$/gm);
  assert.equal(computed + hit, sum(text, /^vllm:prompt_tokens_total\{[^}]*\} (\d+)$/gm), 'sources add up to the prompt tokens');
  assert.ok(sum(text, /^vllm:request_max_num_generation_tokens_count\{[^}]*\} (\d+)$/gm) >= 6);
  assert.ok(sum(text, /^vllm:request_prefill_kv_computed_tokens_count\{[^}]*\} (\d+)$/gm) >= 6);
  assert.match(text, /^vllm:engine_sleep_state\{[^}]*sleep_state="awake"\} 1$/m);
  assert.match(text, /^vllm:cache_config_info\{block_size="64",[^}]*kv_cache_size_tokens="\d+"[^}]*engine="0"[^}]*\} 1$/m);
  assert.doesNotMatch(text, /^vllm:cache_config_info\{[^}]*model_name=/m, 'no model_name label, as in vLLM');
  assert.deepEqual(promtoolProblems(text), []);
  const om = await fetch(serve.ready.metrics, { headers: { accept: 'application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5' } });
  assert.match(om.headers.get('content-type') ?? '', /^application\/openmetrics-text; version=1\.0\.0/);
  const omText = await om.text();
  assert.ok(omText.trimEnd().endsWith('# EOF'), 'OpenMetrics ends with # EOF');
  assert.match(omText, /^vllm:request_time_per_output_token_seconds_count\{/m);
});
