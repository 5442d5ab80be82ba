/**
 * Open-addressing hash table from a u64 sequence hash, carried as (hi, lo) u32 halves, to a
 * non-negative int32 value (a block id). Linear probing over one typed array allocated once, with
 * backward-shift deletion so there are no tombstones and lookups never degrade. Key halves and
 * value share a 16-byte entry so a probe touches one cache line.
 *
 *   entry:  0              1              2             capacity = power of two ≥ 2 × maxEntries
 *   cells [ v  hi  lo  - | -1  .  .  - | v  hi  lo  - ]  load factor ≤ 0.5, v = -1: empty
 *
 * Keys are stored as int32 bit patterns (hi | 0, lo | 0).
 */
export class BlockHashTable {
  readonly capacity: number;
  private readonly mask: number;
  private readonly cells: Int32Array;
  private count: number;

  constructor(maxEntries: number) {
    let cap = 16;
    while (cap < maxEntries * 2) cap *= 2;
    this.capacity = cap;
    this.mask = cap - 1;
    this.cells = new Int32Array(cap * 4);
    this.count = 0;
    this.clear();
  }

  get size(): number {
    return this.count;
  }

  private home(hi: number, lo: number): number {
    // Keys are XXH3 outputs, already well mixed; the multiply guards against structured keys.
    return (Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> 7) & this.mask;
  }

  /** Value stored for the key, or -1. */
  find(hi: number, lo: number): number {
    const mask = this.mask;
    const cells = this.cells;
    const h = hi | 0;
    const l = lo | 0;
    let i = this.home(hi, lo);
    for (;;) {
      const c = i << 2;
      const v = cells[c] as number;
      if (v < 0) return -1;
      if (cells[c + 2] === l && cells[c + 1] === h) return v;
      i = (i + 1) & mask;
    }
  }

  /**
   * Read the home entries of keys hi/lo[from, to) and return a value derived from them. The loads
   * are independent, so the CPU overlaps their cache misses; a run of find()/insert() over the
   * same keys right after then mostly hits the cache. Pure read.
   */
  warm(hi: Uint32Array, lo: Uint32Array, from: number, to: number): number {
    const cells = this.cells;
    let acc = 0;
    for (let b = from; b < to; b++) acc ^= cells[this.home(hi[b] as number, lo[b] as number) << 2] as number;
    return acc;
  }

  /** The value in the key's home entry (whatever key it holds): a single read, for warming. */
  peek(hi: number, lo: number): number {
    return this.cells[this.home(hi, lo) << 2] as number;
  }

  /** Insert a key that is not present. The caller guarantees capacity (≤ maxEntries entries). */
  insert(hi: number, lo: number, v: number): void {
    const mask = this.mask;
    const cells = this.cells;
    let i = this.home(hi, lo);
    while ((cells[i << 2] as number) >= 0) i = (i + 1) & mask;
    const c = i << 2;
    cells[c] = v;
    cells[c + 1] = hi | 0;
    cells[c + 2] = lo | 0;
    this.count++;
  }

  /** Remove the key; returns its value or -1 if absent. */
  remove(hi: number, lo: number): number {
    const mask = this.mask;
    const cells = this.cells;
    const h = hi | 0;
    const l = lo | 0;
    let i = this.home(hi, lo);
    for (;;) {
      const c = i << 2;
      const v = cells[c] as number;
      if (v < 0) return -1;
      if (cells[c + 2] === l && cells[c + 1] === h) break;
      i = (i + 1) & mask;
    }
    const removed = cells[i << 2] as number;
    // Backward shift: pull later entries of the probe run into the hole when their home slot
    // does not lie cyclically in (hole, j].
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const cj = j << 2;
      const v = cells[cj] as number;
      if (v < 0) break;
      const kh = cells[cj + 1] as number;
      const kl = cells[cj + 2] as number;
      const home = this.home(kh, kl);
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!inRange) {
        const ch = hole << 2;
        cells[ch] = v;
        cells[ch + 1] = kh;
        cells[ch + 2] = kl;
        hole = j;
      }
    }
    cells[hole << 2] = -1;
    this.count--;
    return removed;
  }

  clear(): void {
    const cells = this.cells;
    for (let c = 0; c < cells.length; c += 4) cells[c] = -1;
    this.count = 0;
  }
}
