/** Router entry point: the policies of router.ts behind the contract of types.ts. */
export {
  createRouter, parseRouterPolicy, pickByCost, KvRouter, SeededUniform, ROUTER_POLICY_NAMES, DEFAULT_KV_OVERLAP_SCORE_WEIGHT, DEFAULT_ROUTER_TEMPERATURE,
} from './router.js';
export { ActiveSequences } from './active-sequences.js';
export type { RouterOptions } from './router.js';
export { PrefixIndex } from './prefix-index.js';
export type { CachedBlocksView, IncrementalCachedBlocksView, RankLoadView, RouteRequest, Router, RouterPolicy } from './types.js';
