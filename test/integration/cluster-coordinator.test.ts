import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coordinator } from '../../src/cluster/coordinator.js';
import { KvRouter } from '../../src/router/index.js';
import type { ClusterConfig } from '../../src/cluster/coordinator.js';
import type { GenerateFinish } from '../../src/cluster/backend.js';
import { normalizeEngineArgs } from '../../src/engine/args.js';
import { Engine, createPolynomialPerfModel } from '../../src/engine/engine.js';
import { Scalar, counterLayout } from '../../src/protocol/rank-counters.js';
import { RankFailedError, OverloadedError } from '../../src/util/errors.js';
import { threadCpus, allowedCpus } from '../../src/util/affinity.js';

function config(over: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    modelName: 'test-model',
    numWorkers: 2,
    dataParallelSize: 2,
    engineArgs: normalizeEngineArgs({ numGpuBlocks: 64, blockSize: 4, maxNumSeqs: 8, maxNumBatchedTokens: 64 }),
    profile: null,
    speedupRatio: 0,
    decodeSpeedupRatio: 1,
    maxModelLen: 256,
    maxWaiting: 1000,
    router: 'round_robin',
    kvOverlapScoreWeight: 1,
    seed: 0,
    natsUrl: null,
    namespace: 'dynamo',
    component: 'backend',
    kvEventsFormat: 'dynamo',
    vllmEventEncoding: 'array',
    eventsFile: null,
    rankCpus: null,
    publisherCpus: null,
    heartbeatMs: 1000,
    frontendCpus: null,
    ranksPerThread: 1,
    rankHeapMb: 128,
    ...over,
  };
}

interface Outcome {
  tokens: number[];
  finish: GenerateFinish;
}

interface GenerateOptions {
  streaming?: boolean;
  seed?: number;
  /** Called with performance.now() on every onTokens call. */
  onDelivery?: (atMs: number) => void;
}

function generate(c: Coordinator, prompt: number[], maxTokens: number, pinnedRank?: number, opts: GenerateOptions = {}): { rank: number; done: Promise<Outcome>; abort(): void } {
  const tokens: number[] = [];
  let resolve!: (o: Outcome) => void;
  const done = new Promise<Outcome>((r) => (resolve = r));
  const h = c.submit(
    { requestId: 'x', promptTokens: Uint32Array.from(prompt), maxTokens, pinnedRank, streaming: opts.streaming, seed: opts.seed },
    {
      onTokens(ids, start, count) {
        opts.onDelivery?.(performance.now());
        for (let i = start; i < start + count; i++) tokens.push(ids[i] as number);
      },
      onFinish(finish) {
        resolve({ tokens, finish });
      },
    },
  );
  return { rank: h.rank, done, abort: () => h.abort() };
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('cluster - requests run on rank threads and produce exactly max_tokens tokens', async () => {
  const c = await Coordinator.start(config());
  try {
    assert.equal(c.numRanks, 4);
    assert.ok(c.isReady());
    const runs = Array.from({ length: 12 }, (_, i) => generate(c, [1, 2, 3, 4, 5, 6, 7, i + 10], 5));
    assert.deepEqual(runs.slice(0, 4).map((r) => r.rank), [0, 1, 2, 3], 'round robin over the 4 ranks');
    const outs = await Promise.all(runs.map((r) => r.done));
    for (const o of outs) {
      assert.equal(o.finish.reason, 'length');
      assert.equal(o.tokens.length, 5);
      assert.equal(o.finish.completionTokens, 5);
      assert.equal(o.finish.promptTokens, 8);
      for (const t of o.tokens) assert.ok(t >= 1000 && t < 2000, `token id ${t} in [1000, 2000)`);
    }
    await until(() => c.counters.every((a) => a[Scalar.running] === 0), 'ranks idle');
    const gen = c.counters.reduce((s, a) => s + (a[Scalar.generationTokens] as number), 0);
    assert.equal(gen, 60, 'generation tokens counted in shared memory');
  } finally {
    await c.shutdown(1000);
  }
});

test('cluster - a repeated prompt on the same rank reports cached prompt tokens', async () => {
  const c = await Coordinator.start(config());
  try {
    const prompt = Array.from({ length: 16 }, (_, i) => i + 1);
    const first = await generate(c, prompt, 2, 1).done;
    assert.equal(first.finish.cachedTokens, 0);
    const second = await generate(c, prompt, 2, 1).done;
    assert.equal(second.finish.rank, 1);
    assert.ok(second.finish.cachedTokens >= 12, `cached ${second.finish.cachedTokens} of 16 prompt tokens`);
  } finally {
    await c.shutdown(1000);
  }
});

test('cluster - aborting in-flight requests frees their KV blocks', async () => {
  const c = await Coordinator.start(config({ speedupRatio: 1 }));
  try {
    const runs = Array.from({ length: 8 }, (_, i) => generate(c, [9, 8, 7, 6, 5, 4, 3, i], 200));
    await until(() => c.counters.some((a) => (a[Scalar.activeBlocks] as number) > 0), 'blocks in use');
    for (const r of runs) r.abort();
    const outs = await Promise.all(runs.map((r) => r.done));
    for (const o of outs) assert.equal(o.finish.reason, 'abort');
    await until(() => c.counters.every((a) => a[Scalar.activeBlocks] === 0 && a[Scalar.running] === 0), 'blocks freed');
  } finally {
    await c.shutdown(1000);
  }
});

for (const kind of ['throw', 'exit', 'oom'] as const) {
  test(`cluster - a rank thread that dies (${kind}) fails its requests cleanly and restarts empty`, async () => {
    const c = await Coordinator.start(config({ speedupRatio: 1, rankHeapMb: 32 }));
    try {
      const victim = generate(c, [1, 2, 3, 4, 5, 6, 7, 8], 240, 2);
      const bystander = generate(c, [1, 2, 3, 4, 5, 6, 7, 8], 3, 0);
      await until(() => (c.counters[2] as Float64Array)[Scalar.running] === 1, 'victim running');
      c.injectFault(2, kind);
      const out = await victim.done;
      assert.equal(out.finish.reason, 'error');
      assert.ok(out.finish.error instanceof RankFailedError, String(out.finish.error));
      assert.match(out.finish.error.message, /rank 2/);
      assert.equal((await bystander.done).finish.reason, 'length', 'other ranks unaffected');
      await until(() => c.isReady(), 'rank 2 restarted');
      assert.equal(c.rankRestarts(2), 1);
      assert.equal((c.counters[2] as Float64Array)[Scalar.restarts], 1);
      const after = await generate(c, [4, 3, 2, 1], 3, 2).done;
      assert.equal(after.finish.reason, 'length', 'restarted rank serves again');
      assert.equal(after.finish.cachedTokens, 0, 'restarted with an empty cache');
    } finally {
      await c.shutdown(1000);
    }
  });
}

test('cluster - overload beyond --max-waiting is refused with 429', async () => {
  const c = await Coordinator.start(config({ numWorkers: 1, dataParallelSize: 1, maxWaiting: 2, speedupRatio: 1 }));
  try {
    const runs = [generate(c, [1, 2], 50), generate(c, [3, 4], 50)];
    assert.throws(() => generate(c, [5, 6], 50), (err: unknown) => err instanceof OverloadedError && err.status === 429);
    for (const r of runs) r.abort();
    await Promise.all(runs.map((r) => r.done));
  } finally {
    await c.shutdown(1000);
  }
});

test('cluster - --cpus pins each rank thread, verified in /proc', async () => {
  const cpus = allowedCpus();
  const c = await Coordinator.start(config({ rankCpus: cpus }));
  try {
    for (const r of c.ranks()) {
      assert.ok(r.tid !== null, 'tid reported');
      const expected = cpus[r.rank % cpus.length] as number;
      assert.equal(r.cpu, expected);
      assert.deepEqual(threadCpus(process.pid, r.tid), [expected], `rank ${r.rank} Cpus_allowed_list`);
    }
  } finally {
    await c.shutdown(1000);
  }
});

test('cluster - several ranks per thread share one wait; a thread that dies restarts all of its ranks', async () => {
  const c = await Coordinator.start(config({ ranksPerThread: 2, speedupRatio: 1 }));
  try {
    const tids = c.ranks().map((r) => r.tid);
    assert.equal(tids[0], tids[1], 'ranks 0 and 1 share a thread');
    assert.equal(tids[2], tids[3], 'ranks 2 and 3 share a thread');
    assert.notEqual(tids[0], tids[2]);
    const outs = await Promise.all([0, 1, 2, 3].map((r) => generate(c, [1, 2, 3, 4, 5], 20, r).done));
    for (const o of outs) assert.equal(o.finish.reason, 'length');
    const a = generate(c, [1, 2, 3, 4, 5, 6, 7, 8], 240, 2);
    const b = generate(c, [1, 2, 3, 4, 5, 6, 7, 8], 240, 3);
    const other = generate(c, [1, 2, 3, 4, 5, 6, 7, 8], 20, 0);
    await until(() => (c.counters[2] as Float64Array)[Scalar.running] === 1 && (c.counters[3] as Float64Array)[Scalar.running] === 1, 'both running');
    c.injectFault(3, 'throw');
    for (const r of [await a.done, await b.done]) {
      assert.equal(r.finish.reason, 'error');
      assert.ok(r.finish.error instanceof RankFailedError);
    }
    assert.equal((await other.done).finish.reason, 'length', 'the other thread is unaffected');
    await until(() => c.isReady(), 'thread restarted');
    assert.equal(c.rankRestarts(2), 1);
    assert.equal(c.rankRestarts(3), 1);
    assert.equal(c.rankRestarts(0), 0);
  } finally {
    await c.shutdown(1000);
  }
});

test('cluster - requests too big for a rank inbox go through the thread large inbox, in order per rank', async () => {
  // 20000-token prompts do not fit a rank's 64 KiB inbox; two ranks share one thread and its large inbox.
  const c = await Coordinator.start(
    config({
      numWorkers: 2,
      dataParallelSize: 1,
      ranksPerThread: 2,
      maxModelLen: 40000,
      engineArgs: normalizeEngineArgs({ numGpuBlocks: 2048, blockSize: 64, maxNumSeqs: 8, maxNumBatchedTokens: 8192 }),
    }),
  );
  try {
    const big = (seed: number): number[] => Array.from({ length: 20000 }, (_, i) => ((i * 31 + seed) % 5000) + 1);
    // Interleave small and large requests on both ranks, then abort one large request right away.
    const runs = [generate(c, big(1), 3, 1), generate(c, [1, 2, 3], 2, 0), generate(c, big(2), 4, 0), generate(c, big(3), 2, 1)];
    const aborted = generate(c, big(4), 50, 0);
    aborted.abort();
    const outs = await Promise.all(runs.map((r) => r.done));
    assert.deepEqual(outs.map((o) => [o.finish.reason, o.tokens.length]), [['length', 3], ['length', 2], ['length', 4], ['length', 2]]);
    assert.equal(outs[0]?.finish.promptTokens, 20000);
    assert.equal((await aborted.done).finish.reason, 'abort');
    await until(() => c.numPending === 0, 'all requests settled');
    // The aborted request left no blocks behind on rank 0.
    await until(() => (c.counters[0] as Float64Array)[Scalar.activeBlocks] === 0, 'rank 0 freed its blocks');
  } finally {
    await c.shutdown(0);
  }
});

test('cluster - the kv router books each routed request (prefill tokens, blocks) until its finish', async () => {
  const c = await Coordinator.start(config({ router: 'kv', routerTemperature: 0 }));
  try {
    // Router-side bookkeeping, read through the router the coordinator owns.
    const kv = (c as unknown as { router: KvRouter }).router;
    assert.ok(kv instanceof KvRouter);
    const prompt = Array.from({ length: 40 }, (_, i) => i + 1); // 10 blocks of 4 tokens
    const a = generate(c, prompt, 20);
    assert.equal(kv.active.size, 1);
    assert.equal(kv.active.activePrefillTokens(a.rank), 40);
    assert.equal(kv.active.activeBlocks(a.rank), 10);
    // Same prompt at once: a's rank costs (40 queued + 40) / 4 + 10 active = 30, an idle rank
    // 40 / 4 + 10 = 20 — the queued prefill sends it elsewhere before any KV event arrives.
    const b = generate(c, prompt, 20);
    assert.notEqual(b.rank, a.rank);
    const outs = await Promise.all([a.done, b.done]);
    for (const o of outs) assert.equal(o.finish.reason, 'length');
    assert.equal(kv.active.size, 0);
    for (let r = 0; r < c.numRanks; r++) {
      assert.equal(kv.active.activePrefillTokens(r), 0);
      assert.equal(kv.active.activeBlocks(r), 0);
    }
    // An aborted request is released too.
    const d = generate(c, prompt, 200);
    d.abort();
    await d.done;
    assert.equal(kv.active.size, 0);
  } finally {
    await c.shutdown(1000);
  }
});

test('cluster - a burst larger than a rank inbox waits on the main thread instead of 429, in order; queued aborts never reach the rank', async () => {
  // 200 prompts of 1024 tokens (~800 KiB of add records) to one rank whose inbox holds ~15 of them.
  const c = await Coordinator.start(
    config({
      numWorkers: 1,
      dataParallelSize: 1,
      maxModelLen: 4096,
      engineArgs: normalizeEngineArgs({ numGpuBlocks: 4096, blockSize: 16, maxNumSeqs: 64, maxNumBatchedTokens: 8192 }),
    }),
  );
  try {
    const prompt = (k: number): number[] => Array.from({ length: 1024 }, (_, i) => ((i * 7 + k * 13) % 3000) + 1);
    // Every other request is non-streaming: its tokens ride lazily, the backlog must flush all the same.
    const runs = Array.from({ length: 200 }, (_, k) => generate(c, prompt(k), 2, 0, { streaming: k % 2 === 0 }));
    // The last one certainly waits in the backlog: aborting it settles it without the rank.
    const last = runs.pop()!;
    last.abort();
    assert.equal((await last.done).finish.reason, 'abort');
    const outs = await Promise.all(runs.map((r) => r.done));
    assert.deepEqual(new Set(outs.map((o) => `${o.finish.reason}/${o.tokens.length}/${o.finish.promptTokens}`)), new Set(['length/2/1024']));
    await until(() => c.numPending === 0, 'all requests settled');
    assert.equal((c.counters[0] as Float64Array)[Scalar.inflight], 0, 'in-flight count back to 0');
  } finally {
    await c.shutdown(1000);
  }
});

/** Deliveries separated by more than 1 ms (records dispatched in one drain arrive back to back). */
function deliveryGroups(times: number[]): number {
  let groups = 0;
  for (let i = 0; i < times.length; i++) if (i === 0 || (times[i] as number) - (times[i - 1] as number) > 1) groups++;
  return groups;
}

test('cluster - at speedup 1 ranks sharing a thread hand tokens over no earlier than their passes end', async () => {
  // The thread sleeps until its earliest deadline and polls the last stretch: neither may let a
  // pass end early. Between a request's first and last token lie its passes 2..N, whose modeled
  // lengths the same engine gives offline (one request per rank, as here).
  const cfg = config({ speedupRatio: 1, ranksPerThread: 2 });
  const maxTokens = 40;
  const offline = new Engine(cfg.engineArgs, createPolynomialPerfModel());
  offline.addRequest(1, Uint32Array.from([1, 2, 3, 4, 5]), maxTokens);
  let modeledMs = 0;
  let tokens = 0;
  while (offline.hasWork()) {
    const res = offline.step(0);
    if (tokens > 0) modeledMs += res.prefillMs + res.decodeMs;
    tokens += res.numTokens;
  }
  assert.equal(tokens, maxTokens);
  const c = await Coordinator.start(cfg);
  try {
    const times: number[][] = [[], []];
    const outs = await Promise.all([0, 1].map((r) => generate(c, [1, 2, 3, 4, 5], maxTokens, r, { streaming: true, onDelivery: (t) => times[r]!.push(t) }).done));
    const layout = counterLayout(256);
    for (const r of [0, 1]) {
      assert.equal(outs[r]!.finish.reason, 'length');
      const t = times[r]!;
      const spanMs = t[t.length - 1]! - t[0]!;
      // 5% slack: the first delivery may reach the main thread later than the rank handed it over.
      const floorMs = modeledMs * 0.95;
      assert.ok(spanMs >= floorMs, `rank ${r}: ${maxTokens} tokens in ${spanMs.toFixed(1)} ms, passes end no earlier than ${floorMs.toFixed(1)} ms`);
      const a = c.counters[r] as Float64Array;
      const h = layout.lateness;
      const waited = a[h.offset + h.buckets.length + 2] as number;
      assert.ok(waited >= maxTokens / 2, `rank ${r}: ${waited} passes waited for their deadline (lateness observed)`);
      assert.ok((a[Scalar.passes] as number) >= maxTokens);
    }
  } finally {
    await c.shutdown(1000);
  }
});

test('cluster - streaming tokens arrive pass by pass; non-streaming ones ride lazily with the same tokens and usage', async () => {
  // Two ranks on one thread (mixed urgent and lazy output in one service round), speedup 1 (~6 ms decode passes).
  const c = await Coordinator.start(config({ speedupRatio: 1, ranksPerThread: 2 }));
  try {
    const maxTokens = 60;
    const streamTimes: number[] = [];
    const lazyTimes: number[] = [];
    const t0 = performance.now();
    const streamed = generate(c, [1, 2, 3, 4, 5], maxTokens, 0, { streaming: true, seed: 7, onDelivery: (t) => streamTimes.push(t) });
    const lazy = generate(c, [1, 2, 3, 4, 5], maxTokens, 1, { streaming: false, seed: 7, onDelivery: (t) => lazyTimes.push(t) });
    const [s, l] = await Promise.all([streamed.done, lazy.done]);
    const lazyMs = performance.now() - t0;
    assert.equal(s.finish.reason, 'length');
    assert.equal(l.finish.reason, 'length');
    assert.equal(l.tokens.length, maxTokens);
    assert.equal(l.finish.completionTokens, maxTokens, 'usage counts every lazily delivered token');
    assert.equal(l.finish.promptTokens, 5);
    assert.deepEqual(l.tokens, s.tokens, 'same seed: same tokens, in order, whatever the delivery');
    // Streaming: one record per pass (a busy main thread may merge a few).
    assert.ok(deliveryGroups(streamTimes) >= maxTokens / 3, `streaming: ${deliveryGroups(streamTimes)} deliveries for ${maxTokens} passes`);
    // Non-streaming: the first token (it is awaited), then one record per OUTPUT_LAZY_MAX_MS (50 ms), then the finish.
    const bound = Math.ceil(lazyMs / 50) + 3;
    assert.ok(deliveryGroups(lazyTimes) <= bound, `non-streaming: ${deliveryGroups(lazyTimes)} deliveries in ${lazyMs.toFixed(0)} ms (at most ${bound})`);

    // Abort a non-streaming request while its tokens wait on the rank: it settles at once, and the
    // rank's next request gets exactly its own tokens.
    const aborted = generate(c, [9, 9, 9], 200, 1, { streaming: false });
    await until(() => (c.counters[1] as Float64Array)[Scalar.generationTokens]! >= maxTokens + 10, 'the aborted request decoding');
    aborted.abort();
    const a = await aborted.done;
    assert.equal(a.finish.reason, 'abort');
    const next = await generate(c, [4, 4, 4, 4], 7, 1, { streaming: false }).done;
    assert.equal(next.finish.reason, 'length');
    assert.equal(next.tokens.length, 7);
    assert.equal(next.finish.completionTokens, 7);
    await until(() => c.numPending === 0, 'all requests settled');
  } finally {
    await c.shutdown(1000);
  }
});
