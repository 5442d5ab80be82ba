import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import OpenAI from 'openai';
import { startServe } from '../support/serve-process.js';
import { allowedCpus, threadCpus } from '../../src/util/affinity.js';

async function metric(url: string, re: RegExp): Promise<number[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(re)].map((m) => Number(m[1]));
}

/** Two consecutive free ports (P, P+1) for --worker-base-port. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    const ok = await Promise.all([base, base + 1].map((port) => new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return base;
  }
  throw new Error('no free port pair');
}

test('serve - config file, MOCKFLEET_* env and flags combine with flags winning; publisher and frontend pinned', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-'));
  const cfg = join(dir, 'fleet.yaml');
  writeFileSync(cfg, 'num-workers: 2\nblock-size: 16\nmodel: from-config\nspeedup-ratio: 0\n');
  const cpus = allowedCpus();
  const pubCpu = cpus[0] as number;
  const feCpu = cpus[cpus.length - 1] as number;
  const serve = await startServe(['--config', cfg, '--num-workers', '3', '--publisher-cpus', String(pubCpu), '--frontend-cpus', String(feCpu)], 30_000, {
    MOCKFLEET_DATA_PARALLEL_SIZE: '2',
  });
  try {
    const { ready } = serve;
    assert.equal(ready.workers, 3, 'flag beats config file');
    assert.equal(ready.ranks, 6, 'env var sets data-parallel-size');
    assert.equal(ready.model, 'from-config');
    const cache = await (await fetch(`${ready.url}/metrics`)).text();
    assert.match(cache, /vllm:cache_config_info\{[^}]*block_size="16"/);
    const pub = ready.placement.find((p) => p.thread === 'publisher');
    const fe = ready.placement.find((p) => p.thread === 'frontend');
    assert.ok(pub?.tid && fe?.tid);
    assert.deepEqual(threadCpus(ready.pid, pub.tid), [pubCpu]);
    assert.deepEqual(threadCpus(ready.pid, fe.tid), [feCpu]);
    for (const p of ready.placement.filter((x) => x.thread.startsWith('rank'))) {
      assert.deepEqual(threadCpus(ready.pid, p.tid as number), cpus, `${p.thread} keeps the full CPU set`);
    }
  } finally {
    assert.equal(await serve.stop(), 0, serve.stderr());
  }
});

test('serve - per-worker endpoints look like one vLLM server each', async () => {
  const base = await freePortPair();
  const serve = await startServe(['--num-workers', '2', '--data-parallel-size', '2', '--worker-base-port', String(base), '--speedup-ratio', '0']);
  try {
    const { ready } = serve;
    assert.deepEqual(ready.worker_urls, [`http://127.0.0.1:${base}`, `http://127.0.0.1:${base + 1}`]);
    for (let w = 0; w < 2; w++) {
      const url = ready.worker_urls[w] as string;
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string }> };
      assert.equal(models.data[0]?.id, ready.model);
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: ready.model, prompt: [1, 2, 3], max_tokens: 4 }),
      });
      assert.equal(res.status, 200);
      // A rank of the other worker is not reachable through this worker's endpoint.
      const other = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mockfleet-rank': String((1 - w) * 2) },
        body: JSON.stringify({ model: ready.model, prompt: [1, 2, 3], max_tokens: 4 }),
      });
      assert.equal(other.status, 400);
      const text = await (await fetch(`${url}/metrics`)).text();
      assert.doesNotMatch(text, /worker_id=/, 'no worker_id label on a per-worker endpoint');
      const engines = [...text.matchAll(/^vllm:num_requests_running\{model_name="[^"]+",engine="(\d+)"\} 0$/gm)].map((m) => m[1]);
      assert.deepEqual(engines, ['0', '1'], 'exactly this worker\'s two DP ranks');
      const done = [...text.matchAll(/^vllm:request_success_total\{[^}]*finished_reason="length"\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
      assert.equal(done, 1, 'only this worker\'s request');
    }
  } finally {
    assert.equal(await serve.stop(), 0, serve.stderr());
  }
});

test('serve - a disconnect storm of streaming clients leaves no running request and no used KV block', async () => {
  const serve = await startServe(['--num-workers', '2', '--speedup-ratio', '1', '--block-size', '16']);
  try {
    const { ready } = serve;
    const controllers: AbortController[] = [];
    const started: Array<Promise<void>> = [];
    for (let i = 0; i < 300; i++) {
      const ac = new AbortController();
      controllers.push(ac);
      started.push((async () => {
        const res = await fetch(`${ready.url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: ready.model, prompt: Array.from({ length: 64 }, (_, j) => i + j + 1), max_tokens: 5000, stream: true }),
          signal: ac.signal,
        });
        assert.equal(res.status, 200);
        const reader = (res.body as ReadableStream<Uint8Array>).getReader();
        await reader.read();
      })());
    }
    await Promise.all(started);
    const busy = await metric(ready.url, /^mockfleet_kv_active_blocks\{[^}]*\} (\S+)$/gm);
    assert.ok(busy.reduce((a, b) => a + b, 0) > 0, 'blocks in use while streaming');
    for (const ac of controllers) ac.abort();
    const end = Date.now() + 10_000;
    for (;;) {
      const running = await metric(ready.url, /^vllm:num_requests_running\{[^}]*\} (\S+)$/gm);
      const waiting = await metric(ready.url, /^vllm:num_requests_waiting\{[^}]*\} (\S+)$/gm);
      const usage = await metric(ready.url, /^vllm:kv_cache_usage_perc\{[^}]*\} (\S+)$/gm);
      if ([...running, ...waiting, ...usage].every((v) => v === 0)) break;
      if (Date.now() > end) throw new Error(`still busy: running ${running} waiting ${waiting} usage ${usage}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const aborted = await metric(ready.url, /^vllm:request_success_total\{[^}]*finished_reason="abort"\} (\S+)$/gm);
    assert.equal(aborted.reduce((a, b) => a + b, 0), 300, 'every stream aborted on its rank');
  } finally {
    assert.equal(await serve.stop(), 0, serve.stderr());
  }
});

test('serve - the official openai SDK works unmodified against the real fleet', async () => {
  const serve = await startServe(['--num-workers', '2', '--speedup-ratio', '0']);
  try {
    const { ready } = serve;
    const client = new OpenAI({ baseURL: `${ready.url}/v1`, apiKey: 'unused' });
    const chat = await client.chat.completions.create({ model: ready.model, messages: [{ role: 'user', content: 'hello fleet' }], max_tokens: 7 });
    assert.equal(chat.choices[0]?.finish_reason, 'length');
    assert.equal(chat.usage?.completion_tokens, 7);
    const stream = await client.completions.create({ model: ready.model, prompt: 'count the chunks', max_tokens: 9, stream: true, stream_options: { include_usage: true } });
    let chunks = 0;
    let usage: { completion_tokens: number } | undefined;
    for await (const c of stream) {
      if ((c.choices[0]?.text ?? '') !== '') chunks++;
      if (c.usage) usage = c.usage;
    }
    assert.equal(chunks, 9);
    assert.equal(usage?.completion_tokens, 9);
  } finally {
    assert.equal(await serve.stop(), 0, serve.stderr());
  }
});

async function streamChunks(url: string, model: string, maxTokens: number, onFirst: () => void): Promise<{ content: number; done: boolean; error: boolean }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: [5, 6, 7, 8], max_tokens: maxTokens, stream: true }),
  });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let text = '';
  let first = true;
  for (;;) {
    let r: { done: boolean; value?: Uint8Array | undefined };
    try {
      r = await reader.read();
    } catch {
      break;
    }
    if (r.done) break;
    text += dec.decode(r.value, { stream: true });
    if (first && text.includes('"text":"')) {
      first = false;
      onFirst();
    }
  }
  const events = text.split('\n\n').filter((l) => l.startsWith('data: {'));
  const content = events.filter((l) => /"text":"[^"]/.test(l)).length;
  return { content, done: text.includes('data: [DONE]'), error: events.some((l) => l.includes('"error"')) };
}

test('serve - SIGTERM lets in-flight requests finish within --drain-timeout, then exits 0', async () => {
  const serve = await startServe(['--num-workers', '1', '--speedup-ratio', '1', '--drain-timeout', '10']);
  const out = await streamChunks(serve.ready.url, serve.ready.model, 80, () => serve.child.kill('SIGTERM'));
  assert.equal(out.content, 80, 'the in-flight stream completed');
  assert.ok(out.done);
  assert.equal(await serve.exited(), 0, serve.stderr());
});

test('serve - requests still running at the end of --drain-timeout are aborted, and serve exits 0', async () => {
  const serve = await startServe(['--num-workers', '1', '--speedup-ratio', '1', '--drain-timeout', '0.3']);
  const t0 = Date.now();
  const out = await streamChunks(serve.ready.url, serve.ready.model, 5000, () => serve.child.kill('SIGTERM'));
  assert.ok(out.content > 0 && out.content < 5000, `stream cut short after ${out.content} tokens`);
  assert.ok(out.error || !out.done, 'the client learns the request was aborted');
  assert.ok(Date.now() - t0 < 8000, 'drain did not wait for the whole request');
  assert.equal(await serve.exited(), 0, serve.stderr());
});
