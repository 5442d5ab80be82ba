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
