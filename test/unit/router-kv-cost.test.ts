/**
 * The kv policy's cost (Dynamo's default selector, lib/kv-router/src/scheduling/selector/default.rs)
 * with hand-computed logits, the router-side bookkeeping behind it, and the temperature pick.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ActiveSequences, createRouter, KvRouter, pickByCost } from '../../src/router/index.js';
import type { RankLoadView, RouteRequest } from '../../src/router/index.js';
import { InvalidConfigError } from '../../src/util/errors.js';
import { xorshift32 } from '../support/xorshift.js';

const BS = 16;

function load(numRanks: number): RankLoadView {
  // The kv policy keeps its own load view; these engine-reported counters must not matter.
  return { numRanks, running: () => 99, waiting: () => 99, activeBlocks: () => 999, totalBlocks: () => 1000 };
}

/** Block i of prefix p has sequence hash (p, i); promptTokens may exceed the full blocks. */
function request(blocks: Array<[number, number]>, promptTokens = blocks.length * BS, firstRank = 0, numCandidateRanks = 3): RouteRequest {
  return {
    numBlocks: blocks.length,
    seqHashHi: Uint32Array.from(blocks.map((b) => b[0])),
    seqHashLo: Uint32Array.from(blocks.map((b) => b[1])),
    promptTokens,
    firstRank,
    numCandidateRanks,
  };
}

const range = (p: number, from: number, to: number): Array<[number, number]> =>
  Array.from({ length: to - from }, (_, i) => [p, from + i] as [number, number]);

function kv(numRanks: number, over: { kvOverlapScoreWeight?: number; routerTemperature?: number; seed?: number } = {}): KvRouter {
  return createRouter('kv', load(numRanks), { seed: over.seed ?? 1, blockSize: BS, ...over }) as KvRouter;
}

function costs(router: KvRouter, n: number): number[] {
  return Array.from(router.cost.subarray(0, n));
}

test('router-kv-cost - logit = w × (queued prefill + uncached tokens) / block + active blocks + added blocks', () => {
  const router = kv(3);
  const A = 1, B = 2;
  // Rank 0 caches A0..A5 (its KV events).
  router.onStored(0, 6, Uint32Array.from([A, A, A, A, A, A]), Uint32Array.from([0, 1, 2, 3, 4, 5]), 0);

  // R1 = A0..A9 plus a partial block: 170 tokens, 10 full blocks.
  const r1 = request(range(A, 0, 10), 170);
  // rank 0: (0 + 170 − 6·16) / 16 = 4.625 prefill + (0 + 10) decode = 14.625
  // ranks 1, 2: 170 / 16 = 10.625 + 10 = 20.625
  assert.equal(router.pick(r1), 0);
  assert.deepEqual(costs(router, 3), [14.625, 20.625, 20.625]);
  assert.equal(router.lastOverlapBlocks, 6);
  router.onRouted(1, r1, 0);
  assert.equal(router.active.activePrefillTokens(0), 74);
  assert.equal(router.active.activeBlocks(0), 10);

  // R2 = A0..A3 + B4..B7, 128 tokens.
  const r2 = request([...range(A, 0, 4), ...range(B, 4, 8)]);
  // rank 0: (74 queued + 128 − 4·16) / 16 = 8.625; decode 10 active + (8 − 4 already active) = 14 → 22.625
  // ranks 1, 2: 128 / 16 = 8 + 8 = 16 (a tie, broken at random)
  const pick2 = router.pick(r2);
  assert.deepEqual(costs(router, 3), [22.625, 16, 16]);
  assert.ok(pick2 === 1 || pick2 === 2);

  // R1's first token: its 74 prefill tokens leave rank 0 → 64 / 16 + 14 = 18, still above 16.
  router.onPrefillDone(1);
  assert.equal(router.pick(r2) === 0, false);
  assert.deepEqual(costs(router, 3), [18, 16, 16]);
  // R1 finished: rank 0 is idle again → 4 + 8 = 12 wins.
  router.onRequestFinished(1);
  assert.equal(router.pick(r2), 0);
  assert.deepEqual(costs(router, 3), [12, 16, 16]);
  assert.equal(router.active.size, 0);
});

test('router-kv-cost - numSeenBlocks: the same costs when true, lookups stop there, bad values are refused', () => {
  const A = 1;
  const stored = (r: KvRouter): void => r.onStored(0, 6, Uint32Array.from([A, A, A, A, A, A]), Uint32Array.from([0, 1, 2, 3, 4, 5]), 0);
  const plain = kv(3), told = kv(3);
  stored(plain);
  stored(told);
  // A0..A9: rank 0 caches six blocks, so "blocks 6.. were never seen" is true; the costs are equal.
  const r = request(range(A, 0, 10), 170);
  assert.equal(plain.pick(r), told.pick({ ...r, numSeenBlocks: 6 }));
  assert.deepEqual(costs(told, 3), costs(plain, 3));
  // Told that only four were seen, the walks stop there: rank 0 matches four blocks.
  told.pick({ ...r, numSeenBlocks: 4 });
  assert.equal(told.lastOverlapBlocks, 4);
  // Past numBlocks counts as numBlocks.
  told.pick({ ...r, numSeenBlocks: 99 });
  assert.equal(told.lastOverlapBlocks, 6);
  for (const bad of [-1, 2.5, Number.NaN]) assert.throws(() => told.pick({ ...r, numSeenBlocks: bad }), RangeError);
});

test('router-kv-cost - kvOverlapScoreWeight scales the prefill term only', () => {
  const router = kv(2, { kvOverlapScoreWeight: 2 });
  router.onStored(0, 6, new Uint32Array(6).fill(1), Uint32Array.from([0, 1, 2, 3, 4, 5]), 0);
  router.onRouted(7, request(range(9, 0, 12), 192, 0, 2), 0); // 12 other blocks active on rank 0, 192 queued tokens
  const r = request(range(1, 0, 10), 160, 0, 2);
  // rank 0: 2 × (192 + 160 − 96) / 16 + (12 + 10) = 32 + 22 = 54; rank 1: 2 × 10 + 10 = 30
  assert.equal(router.pick(r), 1);
  assert.deepEqual(costs(router, 2), [54, 30]);
  const w0 = kv(2, { kvOverlapScoreWeight: 0 });
  w0.onStored(0, 6, new Uint32Array(6).fill(1), Uint32Array.from([0, 1, 2, 3, 4, 5]), 0);
  w0.pick(r);
  assert.deepEqual(costs(w0, 2), [10, 10]);
});

test('router-kv-cost - temperature 0 takes the minimum; softmax over range-normalised costs otherwise', () => {
  const c = Float64Array.from([10, 12, 14]);
  const fixed = (u: number) => () => u;
  assert.equal(pickByCost(c, 0, 3, 0, fixed(0.99)), 0);
  // T = 1: p ∝ exp(−(c − 10) / 4) = [1, 0.6065, 0.3679] / 1.9744 = [0.5065, 0.3072, 0.1863]
  assert.equal(pickByCost(c, 0, 3, 1, fixed(0.5)), 0);
  assert.equal(pickByCost(c, 0, 3, 1, fixed(0.6)), 1);
  assert.equal(pickByCost(c, 0, 3, 1, fixed(0.81)), 1);
  assert.equal(pickByCost(c, 0, 3, 1, fixed(0.82)), 2);
  // T = 0.5: p ∝ [1, e^−1, e^−2] / 1.5032 = [0.6652, 0.2447, 0.0900]
  assert.equal(pickByCost(c, 0, 3, 0.5, fixed(0.66)), 0);
  assert.equal(pickByCost(c, 0, 3, 0.5, fixed(0.67)), 1);
  assert.equal(pickByCost(c, 0, 3, 0.5, fixed(0.90)), 1);
  assert.equal(pickByCost(c, 0, 3, 0.5, fixed(0.92)), 2);
  // Equal costs: uniform.
  const flat = Float64Array.from([0, 5, 5, 5, 5]);
  assert.equal(pickByCost(flat, 1, 4, 1, fixed(0.5)), 3);
  // Exact ties at temperature 0: reservoir sampling (the k-th tie replaces with probability 1/k).
  assert.equal(pickByCost(flat, 1, 4, 0, fixed(0.99)), 1);
  assert.equal(pickByCost(flat, 1, 4, 0, fixed(0.1)), 4);
});

test('router-kv-cost - softmax sampling is seeded: same seed, same picks; it favours cheap ranks', () => {
  const picks = (seed: number): number[] => {
    const router = kv(3, { routerTemperature: 1, seed });
    router.onStored(0, 8, new Uint32Array(8).fill(4), Uint32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 0);
    const r = request(range(4, 0, 8));
    return Array.from({ length: 300 }, () => router.pick(r));
  };
  const a = picks(5), b = picks(5), c = picks(6);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // costs [8, 16, 16] → p = [1, e^−1, e^−1] / (1 + 2e^−1) = [0.576, 0.212, 0.212]
  const zeros = a.filter((x) => x === 0).length;
  assert.ok(zeros > 140 && zeros < 210, `rank 0 picked ${zeros} / 300 times`);
  assert.ok(a.includes(1) && a.includes(2));
});

for (const mode of ['index', 'chains'] as const) test(`router-kv-cost - active sequences (${mode}) count a shared prefix once and release it by reference`, () => {
  const act = new ActiveSequences(2, mode);
  const hi = new Uint32Array(4).fill(3), lo = Uint32Array.from([0, 1, 2, 3]);
  act.add(1, 1, 40, 4, hi, lo);
  act.add(2, 1, 10, 2, hi, lo); // shares blocks 0..1
  assert.equal(act.activeBlocks(1), 4);
  assert.equal(act.activePrefillTokens(1), 50);
  assert.equal(act.activeRequests(1), 2);
  act.finish(1);
  assert.equal(act.activeBlocks(1), 2);
  assert.equal(act.activePrefillTokens(1), 10);
  act.prefillDone(2);
  act.prefillDone(2);
  assert.equal(act.activePrefillTokens(1), 0);
  act.finish(2);
  act.finish(2); // unknown: ignored
  assert.equal(act.activeBlocks(1), 0);
  assert.equal(act.size, 0);
  act.add(3, 0, 0, 4, hi, lo);
  assert.throws(() => act.add(3, 0, 0, 4, hi, lo), RangeError);
  assert.throws(() => act.add(4, 2, 0, 0, hi, lo), RangeError);
});

for (const mode of ['index', 'chains'] as const) test(`router-kv-cost - bookkeeping (${mode}) survives many requests on shared prefixes (table growth and deletion)`, () => {
  const act = new ActiveSequences(4, mode);
  const n = 3000;
  const hi = new Uint32Array(20), lo = new Uint32Array(20);
  for (let id = 0; id < n; id++) {
    for (let b = 0; b < 20; b++) { hi[b] = b < 5 ? 1 : id; lo[b] = b; }
    act.add(id, id % 4, 7, 20, hi, lo);
  }
  // Per rank: 5 shared + 15 × 750 own blocks.
  for (let r = 0; r < 4; r++) assert.equal(act.activeBlocks(r), 5 + 15 * 750);
  for (let id = 0; id < n; id++) if ((id >> 2) % 2 === 0) act.finish(id);
  for (let r = 0; r < 4; r++) assert.equal(act.activeBlocks(r), 5 + 15 * 375);
  for (let id = 0; id < n; id++) act.finish(id);
  for (let r = 0; r < 4; r++) {
    assert.equal(act.activeBlocks(r), 0);
    assert.equal(act.activePrefillTokens(r), 0);
  }
});

test('router-kv-cost - invalid temperature is rejected naming the flag', () => {
  for (const t of [-0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => kv(2, { routerTemperature: t }), (e: unknown) => e instanceof InvalidConfigError && /--router-temperature/.test(e.message));
  }
});

test('router-kv-cost - active blocks match a reference count under random overlapping requests', () => {
  let x = 7;
  const next = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  const numRanks = 3;
  const act = new ActiveSequences(numRanks);
  const live = new Map<number, { rank: number; keys: string[] }>();
  const hi = new Uint32Array(12), lo = new Uint32Array(12);
  for (let id = 0; id < 4000; id++) {
    // Prompts share prefixes from a small tree, so ranks hold blocks once, twice or more.
    const n = 1 + (next() % 12);
    const keys: string[] = [];
    for (let b = 0; b < n; b++) { hi[b] = next() % (b + 2); lo[b] = b; keys.push(`${hi[b]}:${b}`); }
    const rank = next() % numRanks;
    act.add(id, rank, 1, n, hi, lo);
    live.set(id, { rank, keys });
    if (next() % 2 === 0) {
      const ids = [...live.keys()];
      const victim = ids[next() % ids.length] as number;
      act.finish(victim);
      live.delete(victim);
    }
    if (id % 500 === 0 || id === 3999) {
      for (let r = 0; r < numRanks; r++) {
        const distinct = new Set<string>();
        for (const v of live.values()) if (v.rank === r) for (const k of v.keys) distinct.add(k);
        assert.equal(act.activeBlocks(r), distinct.size);
      }
    }
  }
  for (const id of [...live.keys()]) act.finish(id);
  for (let r = 0; r < numRanks; r++) assert.equal(act.activeBlocks(r), 0);
});

test('router-kv-cost - active blocks by chains equal the index for sequence hashes: counts and depths, random traffic', () => {
  let x = 11;
  const next = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  const numRanks = 3;
  const byIndex = new ActiveSequences(numRanks, 'index');
  const byChains = new ActiveSequences(numRanks, 'chains');
  const live = new Map<number, { rank: number; keys: string[] }>();
  // Sequence hashes: block i's hash is a function of the whole prefix (here a string of the
  // token-block choices), as chained hashing makes it; prompts branch from a small tree.
  const chainOf = (n: number): { hi: Uint32Array; lo: Uint32Array; keys: string[] } => {
    const hi = new Uint32Array(n), lo = new Uint32Array(n), keys: string[] = [];
    let prefix = '';
    for (let b = 0; b < n; b++) {
      prefix += `${next() % (b < 6 ? 2 : 5)},`;
      keys.push(prefix);
      let h = 2166136261;
      for (let k = 0; k < prefix.length; k++) h = Math.imul(h ^ prefix.charCodeAt(k), 16777619);
      hi[b] = h >>> 0;
      lo[b] = prefix.length;
    }
    return { hi, lo, keys };
  };
  const depthIndex = new Int32Array(numRanks), depthChains = new Int32Array(numRanks);
  let deepest = 0;
  for (let id = 0; id < 3000; id++) {
    const q = chainOf(next() % 40);
    byIndex.matchDepths(q.hi.length, q.hi, q.lo, 0, numRanks, depthIndex);
    byChains.matchDepths(q.hi.length, q.hi, q.lo, 0, numRanks, depthChains);
    assert.deepEqual(depthChains, depthIndex, `request ${id}: depths`);
    for (const d of depthIndex) if (d > deepest) deepest = d;
    const rank = next() % numRanks;
    byIndex.add(id, rank, 1, q.hi.length, q.hi, q.lo);
    byChains.add(id, rank, 1, q.hi.length, q.hi, q.lo);
    live.set(id, { rank, keys: q.keys });
    while (live.size > 0 && next() % 3 === 0) {
      const ids = [...live.keys()];
      const victim = ids[next() % ids.length] as number;
      byIndex.finish(victim);
      byChains.finish(victim);
      live.delete(victim);
    }
    for (let r = 0; r < numRanks; r++) {
      const distinct = new Set<string>();
      for (const v of live.values()) if (v.rank === r) for (const k of v.keys) distinct.add(k);
      assert.equal(byChains.activeBlocks(r), distinct.size, `request ${id}: rank ${r} blocks`);
      assert.equal(byIndex.activeBlocks(r), distinct.size);
    }
  }
  // Not vacuous: depths past the shared top of the tree were found.
  assert.ok(deepest > 10, `deepest match ${deepest}`);
  for (const id of [...live.keys()]) byChains.finish(id);
  for (let r = 0; r < numRanks; r++) assert.equal(byChains.activeBlocks(r), 0);
  assert.throws(() => new ActiveSequences(2, 'tree' as never), RangeError);
});

test('router-kv-cost - temperature 0 with a rank-by-rank view skips ranks that cannot win: same picks, same draws, same costs where asked', () => {
  // Two routers over the same fake caches: one may ask rank by rank (and skip), the other is
  // asked for every rank. Many ranks tie (equal depths and loads), so the pick draws often.
  const N = 12;
  const rnd = xorshift32(11);
  let cacheDepth = new Int32Array(N);
  const asked: number[] = [];
  const whole = { matchDepths: (_nb: number, _hi: Uint32Array, _lo: Uint32Array, first: number, n: number, depth: Int32Array, seen?: number): void => {
    for (let r = first; r < first + n; r++) depth[r] = Math.min(cacheDepth[r] as number, seen ?? Infinity);
  } };
  let limit = 0;
  const incremental = {
    ...whole,
    beginWalks: (_nb: number, _hi: Uint32Array, _lo: Uint32Array, seen?: number): void => { limit = seen ?? Infinity; },
    depthOf: (r: number): number => { asked.push(r); return Math.min(cacheDepth[r] as number, limit); },
    endWalks: (): void => {},
  };
  const opts = { seed: 3, blockSize: BS, activeBlocks: 'chains' as const };
  const a = createRouter('kv', load(N), { ...opts, cachedBlocks: incremental }) as KvRouter;
  const b = createRouter('kv', load(N), { ...opts, cachedBlocks: whole }) as KvRouter;
  const activeDepth = new Int32Array(N);
  let skipped = 0, ties = 0;
  for (let i = 0; i < 1000; i++) {
    const nb = 2 + (rnd() % 10);
    // Prompts share a few leading blocks (so routed requests make active depths), then diverge.
    const blocks: Array<[number, number]> = Array.from({ length: nb }, (_, k) => (k < 3 ? [7, k] : [1000 + i, k]));
    cacheDepth = Int32Array.from({ length: N }, () => (rnd() % 3 === 0 ? rnd() % (nb + 1) : Math.min(2, nb)));
    const req = request(blocks, nb * BS - (rnd() % BS), 0, N);
    b.active.matchDepths(nb, req.seqHashHi, req.seqHashLo, 0, N, activeDepth);
    // Bounds the caller vouches for: at or above both depths, sometimes loose.
    const rankBounds = Int32Array.from({ length: N }, (_, r) => Math.min(nb, Math.max(cacheDepth[r] as number, activeDepth[r] as number) + (rnd() % 2)));
    asked.length = 0;
    const pa = a.pick({ ...req, rankBounds });
    const pb = b.pick(req);
    assert.equal(pa, pb, `request ${i}`);
    const full = costs(b, N), part = costs(a, N);
    const min = Math.min(...full);
    if (full.filter((c) => c === min).length > 1) ties++;
    for (let r = 0; r < N; r++) {
      if (asked.includes(r)) assert.equal(part[r], full[r], `request ${i} rank ${r}: an asked rank's cost`);
      else {
        skipped++;
        assert.ok((part[r] as number) <= (full[r] as number) && (part[r] as number) > min, `request ${i} rank ${r}: a skipped rank's lower bound`);
      }
    }
    a.onRouted(i, req, pa);
    b.onRouted(i, req, pb);
    if (i % 3 === 0 && i > 0) {
      a.onRequestFinished(i - 1);
      b.onRequestFinished(i - 1);
    }
  }
  assert.ok(skipped > 1000, `ranks skipped: ${skipped}`);
  assert.ok(ties > 20, `picks with tied minimum costs: ${ties}`);
});
