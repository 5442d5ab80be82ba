/**
 * Routing contract shared by the live cluster and the offline replayer.
 * Ranks are global indices 0..numRanks-1.
 */

/** Per-rank load as the router sees it. Implementations read shared counters or engine state. */
export interface RankLoadView {
  readonly numRanks: number;
  running(rank: number): number;
  waiting(rank: number): number;
  /** KV blocks currently referenced by running requests. */
  activeBlocks(rank: number): number;
  totalBlocks(rank: number): number;
}

/** A request as the router sees it: its prompt's full-block sequence hashes (engine-spec §5.1). */
export interface RouteRequest {
  readonly numBlocks: number;
  readonly seqHashHi: Uint32Array;
  readonly seqHashLo: Uint32Array;
  readonly promptTokens: number;
  /** Ranks the request may go to: [firstRank, firstRank + numCandidateRanks). */
  readonly firstRank: number;
  readonly numCandidateRanks: number;
  /**
   * Optional, what the caller knows: the blocks from this one on were part of no earlier request,
   * so no rank caches them and no active request holds them (the offline replayer knows which
   * trace hash ids it has not seen yet). The kv policy then looks up only the blocks before it;
   * the depths are the same. Absent: numBlocks.
   */
  readonly numSeenBlocks?: number;
  /**
   * Optional, what the caller knows per rank: rank r caches none of the blocks from rankBounds[r]
   * on and no active request on it holds them (the offline replayer's routed ids). The kv policy
   * uses them only to skip ranks that cannot win (with an IncrementalCachedBlocksView); the pick
   * is the same.
   */
  readonly rankBounds?: Int32Array;
}

export type RouterPolicy = 'round_robin' | 'random' | 'least_loaded' | 'kv';

/** Which blocks each rank caches, as the kv policy asks it. */
export interface CachedBlocksView {
  /**
   * For each rank r in [firstRank, firstRank + numCandidates): the number of leading blocks of
   * (hi[i], lo[i]), i < numBlocks, that r caches, written to depth[r]. `numSeenBlocks`
   * (RouteRequest's, at most numBlocks): the blocks from there on are cached nowhere, so they
   * need no lookup.
   */
  matchDepths(numBlocks: number, hi: Uint32Array, lo: Uint32Array, firstRank: number, numCandidates: number, depth: Int32Array, numSeenBlocks?: number): void;
}

/**
 * A CachedBlocksView that also answers rank by rank within one pick: beginWalks, then depthOf for
 * some of the candidates (each at most once), then endWalks; matchDepths is the same with every
 * candidate asked.
 */
export interface IncrementalCachedBlocksView extends CachedBlocksView {
  beginWalks(numBlocks: number, hi: Uint32Array, lo: Uint32Array, numSeenBlocks?: number): void;
  depthOf(rank: number): number;
  endWalks(): void;
}

export interface Router {
  readonly policy: RouterPolicy;
  /** Pick a global rank for the request. Deterministic for a given seed and history. */
  pick(req: RouteRequest): number;
  /** Feed KV events of one rank (only the kv policy uses them). */
  onStored(rank: number, numBlocks: number, seqHashHi: Uint32Array, seqHashLo: Uint32Array, start: number): void;
  onRemoved(rank: number, numBlocks: number, seqHashHi: Uint32Array, seqHashLo: Uint32Array, start: number): void;
  onCleared(rank: number): void;
  /**
   * The request of the latest pick() (same `req`, unchanged) was sent to `rank` as `requestId`.
   * The kv policy books its prefill tokens and prompt blocks there (router-side load, as
   * Dynamo's scheduler does after a selection); the other policies ignore it.
   */
  onRouted(requestId: number, req: RouteRequest, rank: number): void;
  /** The request's first token came back (Dynamo `mark_prefill_completed`). Unknown ids are ignored. */
  onPrefillDone(requestId: number): void;
  /** The request finished, failed or was aborted (Dynamo `free`). Unknown ids are ignored. */
  onRequestFinished(requestId: number): void;
}
