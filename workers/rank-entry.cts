/**
 * piscina loads a task file with require() first. Node 20's require(esm) can race with a later
 * import() of the same graph and fail with ERR_INTERNAL_ASSERTION ("imported again after being
 * required"), so the pool loads this CommonJS shim and the shim import()s the ESM rank loop.
 */
type RankModule = { default: (task: unknown) => unknown };
let loaded: Promise<RankModule> | null = null;

export = function runRankTask(task: unknown): Promise<unknown> {
  loaded ??= import('./rank-worker.js') as Promise<RankModule>;
  return loaded.then((m) => m.default(task));
};
