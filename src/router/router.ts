/**
 * Routing policies behind the Router contract (types.ts): round_robin, random (seeded),
 * least_loaded and kv (Dynamo-style KV-aware routing over a prefix index fed by KV events).
 * See src/router/README.md.
 */
import { InvalidConfigError } from '../util/errors.js';
import { ActiveSequences } from './active-sequences.js';
import type { ActiveBlocksMode } from './active-sequences.js';
import { PrefixIndex } from './prefix-index.js';
import type { CachedBlocksView, IncrementalCachedBlocksView, RankLoadView, RouteRequest, Router, RouterPolicy } from './types.js';

export const ROUTER_POLICY_NAMES: readonly RouterPolicy[] = ['round_robin', 'random', 'least_loaded', 'kv'];
/** Dynamo's --kv-overlap-score-weight default. */
export const DEFAULT_KV_OVERLAP_SCORE_WEIGHT = 1.0;
/** Dynamo's --router-temperature default (deterministic argmin). */
export const DEFAULT_ROUTER_TEMPERATURE = 0;

export interface RouterOptions {
  seed: number;
  kvOverlapScoreWeight?: number;
  /** kv: 0 = lowest cost, > 0 = seeded softmax sampling over normalised costs. */
  routerTemperature?: number;
  /** Tokens per KV block (the engines' block size; the hashes in RouteRequest use it). */
  blockSize: number;
  /**
   * kv: read the ranks' cached blocks from here instead of an index fed by KV events (the offline
   * replayer, whose engines are in the same thread: a direct read gives what the events would
   * have built, without building it). onStored / onRemoved / onCleared then throw.
   */
  cachedBlocks?: CachedBlocksView;
  /**
   * kv: how the router's own bookkeeping keeps each rank's active blocks (ActiveSequences):
   * 'index' (default) or 'chains' (cheaper with few requests in flight per rank; the offline
   * replayer). Same results.
   */
  activeBlocks?: ActiveBlocksMode;
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
  onRouted(): void {}
  onPrefillDone(): void {}
  onRequestFinished(): void {}
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
  private readonly rng: SeededUniform;
  constructor(load: RankLoadView, seed: number) {
    super(load);
    this.rng = new SeededUniform(seed);
  }
  pick(req: RouteRequest): number {
    checkCandidates(req, this.load.numRanks);
    return req.firstRank + Math.floor(this.rng.next() * req.numCandidateRanks);
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

/** Uniform float in [0, 1) from a seeded mulberry32 stream. */
export class SeededUniform {
  private state: number;
  constructor(seed: number) {
    // splitmix32-style scramble so nearby seeds give unrelated streams.
    let s = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b);
    s ^= s >>> 13;
    this.state = s | 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/**
 * Dynamo's worker pick over costs (lower is better) of ranks [first, first + n)
 * (`lib/kv-router/src/scheduling/selector/default.rs`): temperature 0 → the minimum, exact ties
 * broken uniformly at random (reservoir sampling); temperature > 0 → softmax sampling over the
 * costs normalised by their range, p(r) ∝ exp(−(cost(r) − min) / ((max − min) · temperature)),
 * uniform when all costs are equal. `uniform` yields floats in [0, 1).
 */
/**
 * Dynamo's cost of a rank (src/router/README.md): weight × prefill blocks (the tokens queued or in
 * prefill on the rank plus the request's uncached tokens, in blocks) + decode blocks (the rank's
 * active blocks plus those the request adds). One function for the cost and pickSkipping's lower
 * bound, which must take the very same float operations.
 */
function rankCost(weight: number, blockSize: number, promptTokens: number, numBlocks: number, prefillTokens: number, activeBlocks: number, depth: number, activeDepth: number): number {
  const prefillBlocks = (prefillTokens + Math.max(0, promptTokens - depth * blockSize)) / blockSize;
  const decodeBlocks = activeBlocks + numBlocks - activeDepth;
  return weight * prefillBlocks + decodeBlocks;
}

export function pickByCost(cost: Float64Array, first: number, n: number, temperature: number, uniform: () => number): number {
  const end = first + n;
  if (temperature === 0) {
    let best = first;
    let bestCost = cost[first] as number;
    let ties = 1;
    for (let r = first + 1; r < end; r++) {
      const c = cost[r] as number;
      if (c < bestCost) {
        best = r;
        bestCost = c;
        ties = 1;
      } else if (c === bestCost) {
        ties++;
        if (Math.floor(uniform() * ties) === 0) best = r;
      }
    }
    return best;
  }
  let min = Number.POSITIVE_INFINITY, max = Number.NEGATIVE_INFINITY;
  for (let r = first; r < end; r++) {
    const c = cost[r] as number;
    if (c < min) min = c;
    if (c > max) max = c;
  }
  const u = uniform();
  if (min === max) return first + Math.min(n - 1, Math.floor(u * n));
  const scale = -1 / ((max - min) * temperature);
  let sum = 0;
  for (let r = first; r < end; r++) sum += Math.exp(((cost[r] as number) - min) * scale);
  let cumulative = 0;
  for (let r = first; r < end; r++) {
    cumulative += Math.exp(((cost[r] as number) - min) * scale) / sum;
    if (u <= cumulative) return r;
  }
  return end - 1;
}

/**
 * KV-aware routing with Dynamo's default cost (see README.md, "kv policy"):
 *
 *   prefill_blocks(r) = (activePrefillTokens(r) + max(0, promptTokens − overlap(r) × blockSize)) / blockSize
 *   decode_blocks(r)  = activeBlocks(r) + (numBlocks − activeDepth(r))
 *   cost(r)           = kvOverlapScoreWeight × prefill_blocks(r) + decode_blocks(r)
 *
 * overlap(r) = leading request blocks r caches (its KV events, or RouterOptions.cachedBlocks); activePrefillTokens,
 * activeBlocks and activeDepth (leading request blocks already held by r's routed requests) are
 * the router's own bookkeeping (ActiveSequences), fed by onRouted / onPrefillDone /
 * onRequestFinished. The pick is pickByCost with --router-temperature.
 */
export class KvRouter implements Router {
  readonly policy = 'kv' as const;
  /** The index KV events feed, or null when the router reads RouterOptions.cachedBlocks. */
  readonly index: PrefixIndex | null;
  private readonly cached: CachedBlocksView;
  readonly active: ActiveSequences;
  private readonly weight: number;
  private readonly temperature: number;
  private readonly blockSize: number;
  private readonly depth: Int32Array;
  private readonly activeDepth: Int32Array;
  /** Cost of every candidate of the latest pick() (other ranks hold stale values). */
  readonly cost: Float64Array;
  private readonly rng: SeededUniform;
  private readonly uniform: () => number;
  /** Overlap (blocks) of the rank chosen by the latest pick(). */
  lastOverlapBlocks = 0;
  private lastReq: RouteRequest | null = null;
  private lastRank = -1;
  /** The cached view, when picks may skip ranks that cannot win (pickSkipping), else null. */
  private readonly incremental: IncrementalCachedBlocksView | null;

  constructor(load: RankLoadView, opts: { weight: number; temperature: number; blockSize: number; seed: number; cachedBlocks?: CachedBlocksView; activeBlocks?: ActiveBlocksMode }) {
    this.weight = opts.weight;
    this.temperature = opts.temperature;
    this.blockSize = opts.blockSize;
    // Start near the expected size (ranks × a typical cache) so early traffic does not rehash
    // repeatedly; capped so huge fleets grow on demand instead of reserving memory up front.
    if (opts.cachedBlocks === undefined) {
      let expected = 0;
      for (let r = 0; r < load.numRanks; r++) expected += load.totalBlocks(r);
      this.index = new PrefixIndex(load.numRanks, Math.min(2 * expected, 1 << 20));
      this.cached = this.index;
    } else {
      this.index = null;
      this.cached = opts.cachedBlocks;
    }
    this.active = new ActiveSequences(load.numRanks, opts.activeBlocks ?? 'index');
    const inc = this.cached as Partial<IncrementalCachedBlocksView>;
    this.incremental = this.temperature === 0 && this.active.mode === 'chains' && typeof inc.beginWalks === 'function' && typeof inc.depthOf === 'function' && typeof inc.endWalks === 'function'
      ? this.cached as IncrementalCachedBlocksView
      : null;
    this.depth = new Int32Array(load.numRanks);
    this.activeDepth = new Int32Array(load.numRanks);
    this.cost = new Float64Array(load.numRanks);
    this.rng = new SeededUniform(opts.seed);
    this.uniform = () => this.rng.next();
  }

  /** Leading blocks of req held by `rank` according to the index. */
  overlapOf(req: RouteRequest, rank: number): number {
    this.cached.matchDepths(req.numBlocks, req.seqHashHi, req.seqHashLo, rank, 1, this.depth);
    return this.depth[rank] as number;
  }

  pick(req: RouteRequest): number {
    checkCandidates(req, this.active.numRanks);
    const first = req.firstRank, n = req.numCandidateRanks, end = first + n;
    const nb = req.numBlocks, bs = this.blockSize, isl = req.promptTokens;
    const depth = this.depth, activeDepth = this.activeDepth, cost = this.cost, active = this.active;
    // Blocks no earlier request had match nowhere: the walks stop before them.
    const seen = req.numSeenBlocks === undefined ? nb : req.numSeenBlocks;
    if (!Number.isInteger(seen) || seen < 0) throw new RangeError(`numSeenBlocks must be an integer ≥ 0, got ${seen}`);
    const lookup = seen < nb ? seen : nb;
    if (this.incremental !== null) return this.pickSkipping(req, lookup, this.incremental);
    this.cached.matchDepths(nb, req.seqHashHi, req.seqHashLo, first, n, depth, lookup);
    active.matchDepths(lookup, req.seqHashHi, req.seqHashLo, first, n, activeDepth);
    for (let r = first; r < end; r++) {
      cost[r] = rankCost(this.weight, bs, isl, nb, active.activePrefillTokens(r), active.activeBlocks(r), depth[r] as number, activeDepth[r] as number);
    }
    const best = pickByCost(cost, first, n, this.temperature, this.uniform);
    this.lastOverlapBlocks = depth[best] as number;
    this.lastReq = req;
    this.lastRank = best;
    return best;
  }

  /**
   * pick() at temperature 0 without walking the ranks that cannot win. A rank's cost is at least
   * its cost with both depths at their largest possible value B = min(rankBounds[r], lookup) (the
   * same float operations, each monotone). pickByCost scans the ranks in order, drawing a random
   * number only at a tie with the running minimum; a rank whose lower bound exceeds the running
   * minimum can neither tie with it nor lower it, so it is skipped — same pick, same draws. Its
   * `cost` entry holds the lower bound.
   */
  private pickSkipping(req: RouteRequest, lookup: number, cached: IncrementalCachedBlocksView): number {
    const first = req.firstRank, end = first + req.numCandidateRanks;
    const nb = req.numBlocks, bs = this.blockSize, isl = req.promptTokens, w = this.weight;
    const hi = req.seqHashHi, lo = req.seqHashLo;
    const depth = this.depth, activeDepth = this.activeDepth, cost = this.cost, active = this.active;
    const bounds = req.rankBounds;
    cached.beginWalks(nb, hi, lo, lookup);
    active.beginWalks();
    let best = -1;
    let bestCost = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (let r = first; r < end; r++) {
      const prefillTokens = active.activePrefillTokens(r), activeBlocks = active.activeBlocks(r);
      if (best >= 0) {
        const b = bounds !== undefined && (bounds[r] as number) < lookup ? bounds[r] as number : lookup;
        // A rank with no active request holds none of the blocks: its active depth is 0.
        const ab = active.activeRequests(r) === 0 ? 0 : b;
        const lowest = rankCost(w, bs, isl, nb, prefillTokens, activeBlocks, b, ab);
        if (lowest > bestCost) {
          cost[r] = lowest;
          continue;
        }
      }
      const d = cached.depthOf(r);
      const ad = active.depthOf(r, lookup, hi, lo);
      depth[r] = d;
      activeDepth[r] = ad;
      const c = rankCost(w, bs, isl, nb, prefillTokens, activeBlocks, d, ad);
      cost[r] = c;
      if (best < 0 || c < bestCost) {
        best = r;
        bestCost = c;
        ties = 1;
      } else if (c === bestCost) {
        ties++;
        if (Math.floor(this.uniform() * ties) === 0) best = r;
      }
    }
    cached.endWalks();
    this.lastOverlapBlocks = depth[best] as number;
    this.lastReq = req;
    this.lastRank = best;
    return best;
  }

  onRouted(requestId: number, req: RouteRequest, rank: number): void {
    const overlap = req === this.lastReq && rank === this.lastRank ? this.lastOverlapBlocks : this.overlapOf(req, rank);
    const prefillTokens = Math.max(0, req.promptTokens - overlap * this.blockSize);
    this.active.add(requestId, rank, prefillTokens, req.numBlocks, req.seqHashHi, req.seqHashLo);
    this.lastReq = null;
  }

  onPrefillDone(requestId: number): void {
    this.active.prefillDone(requestId);
  }

  onRequestFinished(requestId: number): void {
    this.active.finish(requestId);
  }

  onStored(rank: number, numBlocks: number, seqHashHi: Uint32Array, seqHashLo: Uint32Array, start: number): void {
    this.eventIndex().addMany(rank, numBlocks, seqHashHi, seqHashLo, start);
  }

  onRemoved(rank: number, numBlocks: number, seqHashHi: Uint32Array, seqHashLo: Uint32Array, start: number): void {
    this.eventIndex().removeMany(rank, numBlocks, seqHashHi, seqHashLo, start);
  }

  onCleared(rank: number): void {
    this.eventIndex().clearRank(rank);
  }

  private eventIndex(): PrefixIndex {
    if (this.index === null) throw new Error('this kv router reads the ranks\' caches directly (RouterOptions.cachedBlocks): it takes no KV events');
    return this.index;
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
      const t = opts.routerTemperature ?? DEFAULT_ROUTER_TEMPERATURE;
      if (!Number.isFinite(t) || t < 0) {
        throw new InvalidConfigError('--router-temperature', `must be a finite number ≥ 0, got ${t}`);
      }
      return new KvRouter(load, { weight: w, temperature: t, blockSize: opts.blockSize, seed: opts.seed, ...(opts.cachedBlocks === undefined ? {} : { cachedBlocks: opts.cachedBlocks }), ...(opts.activeBlocks === undefined ? {} : { activeBlocks: opts.activeBlocks }) });
    }
  }
}
