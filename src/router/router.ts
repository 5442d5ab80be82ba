/**
 * Routing policies behind the Router contract (types.ts): round_robin, random (seeded),
 * least_loaded and kv (Dynamo-style KV-aware routing over a prefix index fed by KV events).
 * See src/router/README.md.
 */
import { InvalidConfigError } from '../util/errors.js';
import { PrefixIndex } from './prefix-index.js';
import type { RankLoadView, RouteRequest, Router, RouterPolicy } from './types.js';

export const ROUTER_POLICY_NAMES: readonly RouterPolicy[] = ['round_robin', 'random', 'least_loaded', 'kv'];
/** Dynamo's --kv-overlap-score-weight default. */
export const DEFAULT_KV_OVERLAP_SCORE_WEIGHT = 1.0;

export interface RouterOptions {
  seed: number;
  kvOverlapScoreWeight?: number;
  /** Tokens per KV block (the engines' block size; the hashes in RouteRequest use it). */
  blockSize: number;
}

function checkCandidates(req: RouteRequest, numRanks: number): void {
  const first = req.firstRank, n = req.numCandidateRanks;
  if (!Number.isInteger(first) || !Number.isInteger(n) || n < 1 || first < 0 || first + n > numRanks) {
    throw new RangeError(`candidate ranks [${first}, ${first + n}) are not a non-empty range within 0..${numRanks - 1}`);
  }
}

/** Base for the policies that ignore KV events. */
abstract class LoadOnlyRouter implements Router {
  abstract readonly policy: RouterPolicy;
  protected readonly load: RankLoadView;
  constructor(load: RankLoadView) {
    this.load = load;
  }
  abstract pick(req: RouteRequest): number;
  // These policies route without cache knowledge, so KV events carry nothing they use.
  onStored(): void {}
  onRemoved(): void {}
  onCleared(): void {}
}

class RoundRobinRouter extends LoadOnlyRouter {
  readonly policy = 'round_robin' as const;
  private next = 0;
  pick(req: RouteRequest): number {
    checkCandidates(req, this.load.numRanks);
    const r = req.firstRank + (this.next % req.numCandidateRanks);
    this.next = (this.next + 1) % 0x40000000;
    return r;
  }
}

class RandomRouter extends LoadOnlyRouter {
  readonly policy = 'random' as const;
  private state: number;
  constructor(load: RankLoadView, seed: number) {
    super(load);
    // splitmix32-style scramble so nearby seeds give unrelated streams.
    let s = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b);
    s ^= s >>> 13;
    this.state = s | 0;
  }
  /** mulberry32: uniform u32. */
  private nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  pick(req: RouteRequest): number {
    checkCandidates(req, this.load.numRanks);
    return req.firstRank + Math.floor((this.nextU32() / 4294967296) * req.numCandidateRanks);
  }
}

class LeastLoadedRouter extends LoadOnlyRouter {
  readonly policy = 'least_loaded' as const;
  pick(req: RouteRequest): number {
    checkCandidates(req, this.load.numRanks);
    const load = this.load;
    let best = req.firstRank;
    let bestReqs = load.running(best) + load.waiting(best);
    let bestBlocks = load.activeBlocks(best);
    const end = req.firstRank + req.numCandidateRanks;
    for (let r = best + 1; r < end; r++) {
      const reqs = load.running(r) + load.waiting(r);
      if (reqs > bestReqs) continue;
      const blocks = load.activeBlocks(r);
      if (reqs < bestReqs || blocks < bestBlocks) {
        best = r;
        bestReqs = reqs;
        bestBlocks = blocks;
      }
    }
    return best;
  }
}

/**
 * KV-aware routing like Dynamo's KV router with temperature 0:
 * cost(rank) = kvOverlapScoreWeight × (numBlocks − overlap(rank)) + activeBlocks(rank),
 * where overlap is the number of leading request blocks the rank holds (from its KV events).
 * Lowest cost wins; ties go to fewer running + waiting requests (so requests that arrive
 * together before any rank has reported a change spread out), then to the lower rank.
 */
export class KvRouter implements Router {
  readonly policy = 'kv' as const;
  readonly index: PrefixIndex;
  private readonly load: RankLoadView;
  private readonly weight: number;
  private readonly depth: Int32Array;
  /** Overlap (blocks) of the rank chosen by the latest pick(). */
  lastOverlapBlocks = 0;

  constructor(load: RankLoadView, weight: number) {
    this.load = load;
    this.weight = weight;
    // Start near the expected size (ranks × a typical cache) so early traffic does not rehash
    // repeatedly; capped so huge fleets grow on demand instead of reserving memory up front.
    let expected = 0;
    for (let r = 0; r < load.numRanks; r++) expected += load.totalBlocks(r);
    this.index = new PrefixIndex(load.numRanks, Math.min(2 * expected, 1 << 20));
    this.depth = new Int32Array(load.numRanks);
  }

  /** Leading blocks of req held by `rank` according to the index. */
  overlapOf(req: RouteRequest, rank: number): number {
    this.index.matchDepths(req.numBlocks, req.seqHashHi, req.seqHashLo, rank, 1, this.depth);
    return this.depth[rank] as number;
  }

  pick(req: RouteRequest): number {
    const load = this.load;
    checkCandidates(req, load.numRanks);
    const depth = this.depth;
    this.index.matchDepths(req.numBlocks, req.seqHashHi, req.seqHashLo, req.firstRank, req.numCandidateRanks, depth);
    const end = req.firstRank + req.numCandidateRanks;
    let best = -1;
    let bestCost = Number.POSITIVE_INFINITY;
    let bestReqs = 0;
    for (let r = req.firstRank; r < end; r++) {
      const cost = this.weight * (req.numBlocks - (depth[r] as number)) + load.activeBlocks(r);
      if (cost > bestCost) continue;
      const reqs = load.running(r) + load.waiting(r);
      if (cost < bestCost || reqs < bestReqs) {
        best = r;
        bestCost = cost;
        bestReqs = reqs;
      }
    }
    this.lastOverlapBlocks = depth[best] as number;
    return best;
  }

  onStored(rank: number, numBlocks: number, seqHashHi: Uint32Array, seqHashLo: Uint32Array, start: number): void {
    this.index.addMany(rank, numBlocks, seqHashHi, seqHashLo, start);
  }

  onRemoved(rank: number, numBlocks: number, seqHashHi: Uint32Array, seqHashLo: Uint32Array, start: number): void {
    this.index.removeMany(rank, numBlocks, seqHashHi, seqHashLo, start);
  }

  onCleared(rank: number): void {
    this.index.clearRank(rank);
  }
}

export function parseRouterPolicy(v: unknown): RouterPolicy {
  if (typeof v === 'string' && (ROUTER_POLICY_NAMES as readonly string[]).includes(v)) return v as RouterPolicy;
  throw new InvalidConfigError('--router', `must be one of ${ROUTER_POLICY_NAMES.join(', ')}, got ${JSON.stringify(v)}`);
}

export function createRouter(policy: RouterPolicy, load: RankLoadView, opts: RouterOptions): Router {
  if (!Number.isInteger(load.numRanks) || load.numRanks < 1) {
    throw new InvalidConfigError('ranks', `a router needs at least one rank, got ${load.numRanks}`);
  }
  if (!Number.isInteger(opts.blockSize) || opts.blockSize < 1) {
    throw new InvalidConfigError('--block-size', `must be a positive integer, got ${opts.blockSize}`);
  }
  if (!Number.isFinite(opts.seed)) throw new InvalidConfigError('--seed', `must be a finite number, got ${opts.seed}`);
  switch (parseRouterPolicy(policy)) {
    case 'round_robin':
      return new RoundRobinRouter(load);
    case 'random':
      return new RandomRouter(load, opts.seed);
    case 'least_loaded':
      return new LeastLoadedRouter(load);
    case 'kv': {
      const w = opts.kvOverlapScoreWeight ?? DEFAULT_KV_OVERLAP_SCORE_WEIGHT;
      if (!Number.isFinite(w) || w < 0) {
        throw new InvalidConfigError('--kv-overlap-score-weight', `must be a finite number ≥ 0, got ${w}`);
      }
      return new KvRouter(load, w);
    }
  }
}
