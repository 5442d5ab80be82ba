import type { TraceRequest } from '../trace/mooncake.js';

/** Most memory the per-id rank sets may take; beyond it the replay looks every block up. */
const MAX_BYTES = 256 * 1024 * 1024;

/**
 * Which ranks each trace hash id was ever routed to (the offline kv router; src/replay/README.md,
 * "Routed ids").
 *
 * A replayed prompt's tokens are its hash ids repeated block by block (synthesizePromptTokens), so
 * an engine block's content, and its hash, fix the ids of every token up to its end. A rank
 * caches a block, or holds it in an active request, only if a request routed to it had those
 * ids. So for a new request and a rank, the first of its ids never routed to that rank bounds
 * the rank's match: no block from the one holding that id's first token on is there, and a walk
 * of the rank's cache can stop before it. Most ranks share only a system prompt with a new
 * request, so most walks end without a lookup.
 */
export class RoutedIds {
  private readonly numRanks: number;
  /** 32-bit words of rank bits per id. */
  private readonly words: number;
  /** Bit r of id i's words: a request with id i was admitted on rank r. */
  private readonly masks: Uint32Array;
  /** Ranks still matching (scratch of bounds()). */
  private readonly alive: Uint32Array;

  private constructor(maxId: number, numRanks: number) {
    this.numRanks = numRanks;
    this.words = (numRanks + 31) >>> 5;
    this.masks = new Uint32Array((maxId + 1) * this.words);
    this.alive = new Uint32Array(this.words);
  }

  /** For these requests and ranks, or null when their ids would take more than 256 MiB. */
  static create(reqs: readonly TraceRequest[], numRanks: number): RoutedIds | null {
    const words = (numRanks + 31) >>> 5;
    const maxIds = Math.floor(MAX_BYTES / (4 * words));
    let maxId = -1;
    for (let i = 0; i < reqs.length; i++) {
      const ids = (reqs[i] as TraceRequest).hashIds;
      for (let t = 0; t < ids.length; t++) if ((ids[t] as number) > maxId) maxId = ids[t] as number;
      if (maxId >= maxIds) return null;
    }
    return new RoutedIds(maxId, numRanks);
  }

  /**
   * Each rank's bound for a prompt with these hash ids and numBlocks full engine blocks of
   * blockSize tokens (traceBlockSize tokens per id) into bounds[0 .. numRanks): the engine block
   * holding the first token of its first id never routed to the rank, at most numBlocks. Returns
   * the largest bound (no rank holds a block from there on).
   */
  bounds(ids: Uint32Array, numBlocks: number, traceBlockSize: number, blockSize: number, bounds: Int32Array): number {
    const numRanks = this.numRanks, words = this.words, masks = this.masks, alive = this.alive;
    for (let w = 0; w < words; w++) alive[w] = w < words - 1 || (numRanks & 31) === 0 ? 0xffffffff : (1 << (numRanks & 31)) - 1;
    let numAlive = numRanks;
    let last = 0;
    for (let t = 0; t < ids.length && numAlive > 0; t++) {
      const block = Math.floor((t * traceBlockSize) / blockSize);
      if (block >= numBlocks) break;
      const base = (ids[t] as number) * words;
      for (let w = 0; w < words; w++) {
        const a = alive[w] as number;
        if (a === 0) continue;
        const keep = (a & (masks[base + w] as number)) >>> 0;
        let dropped = (a & ~keep) >>> 0;
        alive[w] = keep;
        while (dropped !== 0) {
          const bit = 31 - Math.clz32(dropped & -dropped);
          bounds[w * 32 + bit] = block;
          numAlive--;
          dropped = (dropped & (dropped - 1)) >>> 0;
        }
      }
      last = block;
    }
    if (numAlive === 0) return last;
    for (let w = 0; w < words; w++) {
      let a = alive[w] as number;
      while (a !== 0) {
        bounds[w * 32 + (31 - Math.clz32(a & -a))] = numBlocks;
        a = (a & (a - 1)) >>> 0;
      }
    }
    return numBlocks;
  }

  /** A request with these ids was admitted on the rank. */
  noteRouted(rank: number, ids: Uint32Array): void {
    const words = this.words, masks = this.masks;
    const w = rank >>> 5, bit = 1 << (rank & 31);
    for (let t = 0; t < ids.length; t++) {
      const at = (ids[t] as number) * words + w;
      masks[at] = (masks[at] as number) | bit;
    }
  }
}
