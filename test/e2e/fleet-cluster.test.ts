/**
 * One fleet across "hosts" over a real 3-node nats-server cluster: two `mockfleet worker`
 * processes on nodes 0 and 1, one `mockfleet serve --num-workers 0` frontend on node 2. The
 * openai SDK streams through the frontend to both workers; the kv router sends a repeated prompt
 * back to the rank that cached it; /metrics shows every remote rank; a killed worker fails its
 * requests with a 503 naming it within 2 s and leaves routing; a new worker gets traffic; a
 * duplicate worker id is refused; losing the worker's and then the frontend's NATS node fails
 * the requests in flight with a clear error and later requests succeed.
 */
import { spawnSync } from 'node:child_process';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { runMockfleet, spawnMockfleet, startNatsCluster, waitFor } from '../support/fleet.js';
import type { FleetProcess, NatsNode } from '../support/fleet.js';

const ENGINE = ['--data-parallel-size', '2', '--num-gpu-blocks', '1024', '--block-size', '16', '--max-model-len', '4096'];
const MODEL = 'mockfleet/mock-llm';

interface FleetView {
  nats_connected: boolean;
  workers: Array<{ instance: string; worker_ids: string[]; slots: number[]; kv_blocks: number | null; epoch: number }>;
}

let nodes: NatsNode[] = [];
const procs: FleetProcess[] = [];
after(async () => {
  for (const p of procs) await p.stop('SIGKILL').catch(() => undefined);
  for (const n of nodes) await n.kill().catch(() => undefined);
});

function worker(node: NatsNode, extra: string[] = []): Promise<FleetProcess> {
  // Speedup 1 keeps long requests in flight long enough to kill things under them.
  return spawnMockfleet(['worker', '--nats', node.url, '--fleet', 'e2e', '--port', '0', '--num-workers', '1', ...ENGINE, '--speedup-ratio', '1', ...extra]).then((p) => {
    procs.push(p);
    return p;
  });
}

async function fleetView(url: string): Promise<FleetView> {
  const r = await fetch(`${url}/fleet`);
  return (await r.json()) as FleetView;
}

/** A streaming completion pinned to one rank slot; resolves with the tokens seen and the error event, if any. */
async function pinnedStream(url: string, slot: number, maxTokens: number, onFirstToken?: () => void): Promise<{ status: number; tokens: number; error: string | null; ms: number }> {
  const t0 = Date.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-mockfleet-rank': String(slot) },
    body: JSON.stringify({ model: MODEL, prompt: 'tell me a long story', max_tokens: maxTokens, stream: true }),
  });
  if (res.status !== 200) {
    onFirstToken?.(); // release a waiter; the caller's assertions report the status
    return { status: res.status, tokens: 0, error: await res.text(), ms: Date.now() - t0 };
  }
  let tokens = 0;
  let error: string | null = null;
  let buf = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const body = JSON.parse(ev.slice(6)) as { error?: { message: string }; choices?: Array<{ text: string; finish_reason: string | null }> };
      if (body.error !== undefined) error = body.error.message;
      else if (body.choices?.[0]?.finish_reason === null) {
        tokens++;
        if (tokens === 1) onFirstToken?.();
      }
    }
  }
  if (tokens === 0) onFirstToken?.();
  return { status: 200, tokens, error, ms: Date.now() - t0 };
}

test('a fleet over a 3-node NATS cluster: streaming, kv routing, metrics, worker and node loss', { timeout: 110_000 }, async (t) => {
  nodes = await startNatsCluster(3);
  const [n0, n1, n2] = nodes as [NatsNode, NatsNode, NatsNode];
  const [wA, wB] = await Promise.all([worker(n0), worker(n1)]);
  const front = await spawnMockfleet(['serve', '--nats', n2.url, '--fleet', 'e2e', '--num-workers', '0', '--port', '0', '--router', 'kv', ...ENGINE]);
  procs.push(front);
  const url = front.ready.url;
  const instA = String(wA.ready['instance']);
  const instB = String(wB.ready['instance']);
  const both = await waitFor('both workers discovered', async () => {
    const v = await fleetView(url);
    return v.workers.length === 2 ? v : undefined;
  });
  const slotsOf = (v: FleetView, inst: string): number[] => v.workers.find((w) => w.instance === inst)?.slots ?? [];
  assert.equal(slotsOf(both, instA).length, 2);
  assert.equal(slotsOf(both, instB).length, 2);

  await t.test('the openai SDK streams through the frontend to both workers', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const texts = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `question number ${i} about ${'x '.repeat(i * 20)}` }], max_tokens: 12, stream: true, stream_options: { include_usage: true } });
      let text = '';
      let usage: { completion_tokens: number } | null = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? '';
        if (chunk.usage) usage = chunk.usage;
      }
      assert.equal(usage?.completion_tokens, 12);
      return text;
    }));
    assert.equal(texts.length, 8);
    for (const t of texts) assert.ok(t.length > 0);
    // Both workers served some of them: their own /metrics count generated tokens.
    for (const w of [wA, wB]) {
      const m = await (await fetch(`${w.ready.url}/metrics`)).text();
      const gen = [...m.matchAll(/^vllm:generation_tokens_total\{[^}]*\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
      assert.ok(gen > 0, `worker ${String(w.ready['instance'])} generated nothing:\n${m.slice(0, 400)}`);
    }
  });

  await t.test('the kv router sends a repeated prompt back to the rank that cached it', async () => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    for (let p = 0; p < 3; p++) {
      const prompt = Array.from({ length: 160 }, (_, i) => `p${p}w${i}`).join(' ');
      const before = (await fleetView(url)).workers.reduce((a, w) => a + (w.kv_blocks ?? 0), 0);
      const first = await client.completions.create({ model: MODEL, prompt, max_tokens: 2 });
      assert.equal(first.usage?.prompt_tokens_details?.cached_tokens ?? 0, 0);
      // The rank's Stored event reaches the frontend's router over NATS.
      await waitFor('KV events of the first request', async () => {
        const now = (await fleetView(url)).workers.reduce((a, w) => a + (w.kv_blocks ?? 0), 0);
        return now > before ? now : undefined;
      });
      const second = await client.completions.create({ model: MODEL, prompt, max_tokens: 2 });
      const cached = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
      assert.ok(cached >= 16 * Math.floor((first.usage?.prompt_tokens ?? 0) / 16) - 16, `prompt ${p}: only ${cached} cached tokens on the second request`);
    }
  });

  await t.test('frontend /metrics shows every remote rank with its worker_id', async () => {
    const m = await (await fetch(`${url}/metrics`)).text();
    for (const w of [wA, wB]) {
      const id = (w.ready['worker_ids'] as string[])[0] as string;
      for (const engine of ['0', '1']) {
        assert.match(m, new RegExp(`^vllm:num_requests_running\\{model_name="${MODEL}",engine="${engine}",worker_id="${id}"\\} \\d+`, 'm'));
      }
    }
    assert.equal((m.match(/^# TYPE vllm:num_requests_running /gm) ?? []).length, 1, 'one TYPE line per family');
    assert.match(m, new RegExp(`^mockfleet_fleet_worker_up\\{fleet_worker="${instA}",.*\\} 1$`, 'm'));
    // promtool flags only vLLM's own names (':' and a histogram ending in _total).
    const r = spawnSync('promtool', ['check', 'metrics'], { input: m, encoding: 'utf8' });
    const problems = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() !== '' && !/^vllm:\S+ metric names should not contain ':'$/.test(l) && !/^vllm:iteration_tokens_total non-counter/.test(l));
    assert.deepEqual(problems, []);
    // OpenMetrics when the scraper asks for it: remote series included, one # EOF at the end.
    const om = await (await fetch(`${url}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } })).text();
    assert.ok(om.endsWith('# EOF\n') && om.indexOf('# EOF') === om.length - 6, 'one # EOF, last');
    for (const w of [wA, wB]) assert.ok(om.includes(`worker_id="${(w.ready['worker_ids'] as string[])[0] as string}"`));
    // A seeded request generates the same tokens on either worker (the seed travels with it).
    const v = await fleetView(url);
    // (different local ranks, so their unseeded draws would differ)
    const seeded = await Promise.all([slotsOf(v, instA)[0], slotsOf(v, instB)[1]].map(async (slot) => {
      const r = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mockfleet-rank': String(slot) },
        body: JSON.stringify({ model: MODEL, prompt: 'same seed', max_tokens: 8, seed: 1234 }),
      });
      assert.equal(r.status, 200);
      return ((await r.json()) as { choices: Array<{ text: string }> }).choices[0]?.text;
    }));
    assert.equal(seeded[0], seeded[1]);
    // The dashboard sees the remote ranks too.
    const snap = (await (await fetch(`${url}/dashboard/snapshot`)).json()) as { numRanks: number; workers: Array<{ id: string }> };
    assert.equal(snap.numRanks, 16);
    for (const w of [wA, wB]) {
      const hex = BigInt((w.ready['worker_ids'] as string[])[0] as string).toString(16).padStart(16, '0');
      assert.ok(snap.workers.some((x) => x.id === hex), `dashboard lists worker ${hex}`);
    }
  });

  await t.test('a second frontend serves the same fleet at the same time', async () => {
    const front2 = await spawnMockfleet(['serve', '--nats', n1.url, '--fleet', 'e2e', '--num-workers', '0', '--port', '0', ...ENGINE]);
    procs.push(front2);
    const url2 = front2.ready.url;
    const v2 = await waitFor('the second frontend to discover both workers', async () => {
      const v = await fleetView(url2);
      return v.workers.length === 2 ? v : undefined;
    });
    const results = await Promise.all([
      ...[instA, instB].map((inst) => pinnedStream(url2, slotsOf(v2, inst)[0] as number, 5)),
      pinnedStream(url, slotsOf(both, instA)[1] as number, 5),
    ]);
    for (const r of results) assert.deepEqual([r.status, r.tokens, r.error], [200, 5, null]);
    // A frontend that dies: the worker aborts its requests instead of running them for nobody.
    const aborted = async (): Promise<number> => {
      const m = await (await fetch(`${wB.ready.url}/metrics`)).text();
      return [...m.matchAll(/^vllm:request_success_total\{[^}]*finished_reason="abort"[^}]*\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
    };
    const before = await aborted();
    let go!: () => void;
    const started = new Promise<void>((res) => (go = res));
    // The stream breaks when its frontend dies: that is the point here.
    const orphan = pinnedStream(url2, slotsOf(v2, instB)[0] as number, 3000, () => go()).catch(() => null);
    await started;
    front2.child.kill('SIGKILL');
    await waitFor('worker B to abort the dead frontend\'s request', async () => ((await aborted()) > before ? true : undefined), 8000);
    await orphan;
  });

  await t.test('a killed worker: in-flight requests end 503 naming it within 2 s, it leaves routing, nothing hangs', async () => {
    const slot = slotsOf(await fleetView(url), instA)[0] as number;
    let killedAt = 0;
    let kill!: () => void;
    const started = new Promise<void>((res) => (kill = res));
    const stream = pinnedStream(url, slot, 3000, () => kill());
    const buffered = fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mockfleet-rank': String(slot + 1) },
      body: JSON.stringify({ model: MODEL, prompt: 'another long one', max_tokens: 3000 }),
    });
    await started;
    wA.child.kill('SIGKILL');
    killedAt = Date.now();
    const s = await stream;
    const streamEndMs = Date.now() - killedAt;
    assert.ok(s.tokens > 0);
    assert.ok(s.error !== null && s.error.includes(instA), `stream error should name ${instA}: ${s.error}`);
    assert.ok(streamEndMs < 2000, `stream ended ${streamEndMs} ms after the kill`);
    const b = await buffered;
    assert.equal(b.status, 503);
    assert.match(await b.text(), new RegExp(instA));
    const v = await fleetView(url);
    assert.deepEqual(v.workers.map((w) => w.instance), [instB]);
    // Routing continues on the other worker.
    const ok = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'hi', max_tokens: 3 }) });
    assert.equal(ok.status, 200);
  });

  await t.test('a new worker gets traffic without restarting the frontend; a duplicate id is refused', async () => {
    const wC = await worker(n0, ['--worker-id', '4242']);
    const instC = String(wC.ready['instance']);
    const v = await waitFor('the new worker', async () => {
      const f = await fleetView(url);
      return f.workers.some((w) => w.instance === instC) ? f : undefined;
    });
    const slot = slotsOf(v, instC)[0] as number;
    const r = await pinnedStream(url, slot, 4);
    assert.equal(r.status, 200);
    assert.equal(r.tokens, 4);
    assert.equal(r.error, null);
    const dup = await runMockfleet(['worker', '--nats', n1.url, '--fleet', 'e2e', '--port', '0', '--num-workers', '1', ...ENGINE, '--worker-id', '4242']);
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /worker id 4242 is already registered in fleet "e2e"/);
    // SIGTERM: the worker drains, says it is gone, deregisters and exits 0; the frontend drops it.
    assert.equal(await wC.stop('SIGTERM'), 0);
    await waitFor('the stopped worker to leave', async () => ((await fleetView(url)).workers.some((w) => w.instance === instC) ? undefined : true), 3000);
  });

  await t.test("losing the worker's NATS node, then the frontend's: in-flight requests fail clearly, later ones succeed", async () => {
    const v = await fleetView(url);
    const slotB = slotsOf(v, instB)[0] as number;
    // Worker B is connected to node 1.
    let go!: () => void;
    const started = new Promise<void>((res) => (go = res));
    const inflight = pinnedStream(url, slotB, 3000, () => go());
    await started;
    await n1.kill();
    const s = await inflight;
    assert.ok(s.error !== null && s.error.includes(instB) && /NATS/.test(s.error), `expected a NATS-loss error naming ${instB}, got ${s.error}`);
    const later = await waitFor('a request on worker B after it reconnected', async () => {
      const r = await pinnedStream(url, slotB, 3);
      return r.status === 200 && r.error === null ? r : undefined;
    });
    assert.equal(later.tokens, 3);

    // The frontend is connected to node 2.
    let go2!: () => void;
    const started2 = new Promise<void>((res) => (go2 = res));
    const inflight2 = pinnedStream(url, slotB, 3000, () => go2());
    await started2;
    await n2.kill();
    const s2 = await inflight2;
    assert.ok(s2.error !== null && /frontend lost its NATS connection/.test(s2.error), `got ${s2.error}`);
    const later2 = await waitFor('a request after the frontend reconnected', async () => {
      const r = await pinnedStream(url, slotB, 3);
      return r.status === 200 && r.error === null ? r : undefined;
    });
    assert.equal(later2.tokens, 3);
    assert.equal((await fleetView(url)).nats_connected, true);
    // SIGTERM: the frontend drains and exits 0.
    assert.equal(await front.stop('SIGTERM'), 0);
  });
});

test('worker and serve --fleet: bad flags name the flag and exit 2', { timeout: 30_000 }, async () => {
  for (const [args, re] of [
    [['worker', '--fleet', 'f'], /nats/],
    [['worker', '--nats', 'nats://127.0.0.1:1', '--fleet', 'a.b'], /--fleet: must be 1-64 letters/],
    [['serve', '--fleet', 'f', '--num-workers', '0'], /--nats: a fleet needs a NATS server/],
    [['serve', '--nats', 'nats://127.0.0.1:1', '--fleet', 'f', '--num-workers', '-1'], /--num-workers/],
    [['worker', '--nats', 'nats://127.0.0.1:1', '--fleet', 'f', '--worker-id', 'abc'], /--worker-id/],
  ] as Array<[string[], RegExp]>) {
    const r = await runMockfleet(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
});
