/** Router entry point: the policies of router.ts behind the contract of types.ts. */
export { createRouter, parseRouterPolicy, KvRouter, ROUTER_POLICY_NAMES, DEFAULT_KV_OVERLAP_SCORE_WEIGHT } from './router.js';
export type { RouterOptions } from './router.js';
export { PrefixIndex } from './prefix-index.js';
export type { RankLoadView, RouteRequest, Router, RouterPolicy } from './types.js';
