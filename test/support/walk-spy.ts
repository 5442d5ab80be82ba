import { Engine } from '../../src/engine/engine.js';
import type { PrefixCacheLookup } from '../../src/engine/kv/hash-table.js';

/**
 * An engine whose prefix-cache table, as EngineCaches reads it (Engine.prefixCacheTable, once at
 * construction), reports every walk: its [from, to) and the depth found.
 */
export class WalkSpyEngine extends Engine {
  walks: Array<[number, number]> = [];
  /** Walks and blocks looked up (a walk reads up to its first miss, or to `to`). */
  calls = 0;
  lookedUp = 0;
  /** Reads of the table's removal count (one per rank a pick reads the table of). */
  countReads = 0;
  override get prefixCacheTable(): PrefixCacheLookup | null {
    const table = super.prefixCacheTable;
    if (table === null) return null;
    const spy = this;
    return {
      get removals() {
        spy.countReads++;
        return table.removals;
      },
      get insertions() {
        return table.insertions;
      },
      findRun(hi: Uint32Array, lo: Uint32Array, from: number, to: number, outIds: Int32Array | null): number {
        const d = table.findRun(hi, lo, from, to, outIds);
        spy.walks.push([from, to]);
        spy.calls++;
        spy.lookedUp += Math.min(d + 1, to) - from;
        return d;
      },
    };
  }
}
