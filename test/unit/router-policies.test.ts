import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRouter, KvRouter } from '../../src/router/index.js';
import type { RankLoadView, RouteRequest } from '../../src/router/index.js';
import { InvalidConfigError } from '../../src/util/errors.js';

class FakeLoad implements RankLoadView {
  readonly run: number[];
  readonly wait: number[];
  readonly active: number[];
  constructor(readonly numRanks: number) {
    this.run = new Array<number>(numRanks).fill(0);
    this.wait = new Array<number>(numRanks).fill(0);
    this.active = new Array<number>(numRanks).fill(0);
  }
  running(r: number): number { return this.run[r]!; }
  waiting(r: number): number { return this.wait[r]!; }
  activeBlocks(r: number): number { return this.active[r]!; }
  totalBlocks(): number { return 1000; }
}

/** A request whose block i has sequence hash (prefix, i) — equal prefixes share leading blocks. */
function request(blocks: Array<[number, number]>, firstRank = 0, numCandidateRanks = 4): RouteRequest {
  return {
    numBlocks: blocks.length,
    seqHashHi: Uint32Array.from(blocks.map((b) => b[0])),
    seqHashLo: Uint32Array.from(blocks.map((b) => b[1])),
    promptTokens: blocks.length * 16,
    firstRank,
    numCandidateRanks,
  };
}

function blocksOf(prefix: number, n: number): Array<[number, number]> {
  return Array.from({ length: n }, (_, i) => [prefix, i] as [number, number]);
}

function store(router: ReturnType<typeof createRouter>, rank: number, blocks: Array<[number, number]>): void {
  router.onStored(rank, blocks.length, Uint32Array.from(blocks.map((b) => b[0])), Uint32Array.from(blocks.map((b) => b[1])), 0);
}

const OPTS = { seed: 1, blockSize: 16 };

test('router-policies - kv sends a repeated prefix to the rank that holds it', () => {
  const load = new FakeLoad(4);
  const router = createRouter('kv', load, OPTS);
  store(router, 2, blocksOf(7, 10));
  load.active[2] = 5; // some load, but 10 cached blocks outweigh it
  assert.equal(router.pick(request(blocksOf(7, 12))), 2);
  assert.equal((router as KvRouter).lastOverlapBlocks, 10);
  // A different prefix has no overlap anywhere: the idle rank 0 wins.
  assert.equal(router.pick(request(blocksOf(8, 12))), 0);
});

test('router-policies - kv forgets removed blocks and cleared ranks', () => {
  const load = new FakeLoad(4);
  const router = createRouter('kv', load, OPTS);
  const blocks = blocksOf(3, 6);
  store(router, 1, blocks);
  assert.equal(router.pick(request(blocks)), 1);
  // Remove the first block: the leading run on rank 1 is now empty.
  router.onRemoved(1, 1, Uint32Array.from([3]), Uint32Array.from([0]), 0);
  assert.equal((router as KvRouter).overlapOf(request(blocks), 1), 0);
  assert.equal(router.pick(request(blocks)), 0);
  store(router, 3, blocks);
  assert.equal(router.pick(request(blocks)), 3);
  router.onCleared(3);
  assert.equal(router.pick(request(blocks)), 0);
});

test('router-policies - kv weighs saved prefill blocks against active blocks with kvOverlapScoreWeight', () => {
  const load = new FakeLoad(2);
  const blocks = blocksOf(1, 10);
  for (const [weight, expected] of [[1, 0], [0.2, 1], [2, 0]] as const) {
    const router = createRouter('kv', load, { ...OPTS, kvOverlapScoreWeight: weight });
    store(router, 0, blocks.slice(0, 6));
    load.active[0] = 4;
    load.active[1] = 0;
    // cost0 = w*(10-6) + 4, cost1 = w*10 + 0
    assert.equal(router.pick(request(blocks, 0, 2)), expected, `weight ${weight}`);
  }
});

test('router-policies - kv breaks cost ties by fewer queued requests, then by the lower rank', () => {
  const load = new FakeLoad(4);
  const router = createRouter('kv', load, OPTS);
  const req = request(blocksOf(9, 4));
  assert.equal(router.pick(req), 0);
  load.wait[0] = 1;
  assert.equal(router.pick(req), 1);
  load.run[1] = 1;
  assert.equal(router.pick(req), 2);
  // Candidates restrict the choice.
  assert.equal(router.pick(request(blocksOf(9, 4), 1, 2)), 2);
});

test('router-policies - least_loaded prefers fewer requests, then fewer active blocks, then the lower rank', () => {
  const load = new FakeLoad(4);
  const router = createRouter('least_loaded', load, OPTS);
  const req = request([]);
  load.run.splice(0, 4, 2, 1, 1, 1);
  load.wait.splice(0, 4, 0, 1, 0, 0);
  load.active.splice(0, 4, 0, 0, 9, 5);
  assert.equal(router.pick(req), 3);
  load.active[2] = 5;
  assert.equal(router.pick(req), 2);
  assert.equal(router.pick(request([], 0, 2)), 0);
});

test('router-policies - round_robin cycles through the candidate ranks', () => {
  const router = createRouter('round_robin', new FakeLoad(6), OPTS);
  const picks = Array.from({ length: 7 }, () => router.pick(request([], 2, 3)));
  assert.deepEqual(picks, [2, 3, 4, 2, 3, 4, 2]);
});

test('router-policies - random is reproducible for a seed and covers every candidate', () => {
  const a = createRouter('random', new FakeLoad(8), { seed: 42, blockSize: 16 });
  const b = createRouter('random', new FakeLoad(8), { seed: 42, blockSize: 16 });
  const c = createRouter('random', new FakeLoad(8), { seed: 43, blockSize: 16 });
  const pa = Array.from({ length: 400 }, () => a.pick(request([], 1, 5)));
  const pb = Array.from({ length: 400 }, () => b.pick(request([], 1, 5)));
  const pc = Array.from({ length: 400 }, () => c.pick(request([], 1, 5)));
  assert.deepEqual(pa, pb);
  assert.notDeepEqual(pa, pc);
  assert.deepEqual([...new Set(pa)].sort(), [1, 2, 3, 4, 5]);
});

test('router-policies - invalid policies, weights and candidate ranges are rejected', () => {
  const load = new FakeLoad(2);
  assert.throws(() => createRouter('fastest' as never, load, OPTS), InvalidConfigError);
  assert.throws(() => createRouter('kv', load, { ...OPTS, kvOverlapScoreWeight: -1 }), InvalidConfigError);
  assert.throws(() => createRouter('kv', load, { ...OPTS, blockSize: 0 }), InvalidConfigError);
  const router = createRouter('kv', load, OPTS);
  assert.throws(() => router.pick(request([], 1, 2)), RangeError);
  assert.throws(() => router.pick(request([], 0, 0)), RangeError);
});
