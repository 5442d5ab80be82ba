/**
 * Open-addressing hash table from a u64 sequence hash, carried as (hi, lo) u32 halves, to a
 * non-negative int32 value (a block id). Linear probing with backward-shift deletion so there
 * are no tombstones and lookups never degrade. Key halves and value share a 16-byte entry so a
 * probe touches one cache line.
 *
 *   entry:  0              1              2             capacity = power of two ≥ 2 × entries
 *   cells [ v+1 hi lo  - | 0   .  .   - | v+1 hi lo - ]  load factor ≤ 0.5, 0 = empty
 *
 * Values are stored + 1 so zeroed memory is an empty table: nothing is filled at construction.
 * The table starts small and doubles (rehashing) as entries arrive, up to the capacity
 * maxEntries needs, so memory follows the number of resident blocks (32 bytes per entry at the
 * worst load). Keys are stored as int32 bit patterns (hi | 0, lo | 0).
 */
/** Entries the table starts with (a power of two). */
const INITIAL_CAPACITY = 64;
/** Keys findRun() reads ahead at a time. */
const FIND_RUN_WARM = 16;

/** What BlockPool needs of its hash → block id table. */
export interface BlockTable {
  readonly size: number;
  readonly capacity: number;
  readonly allocatedBytes: number;
  /** Value stored for the key, or -1. */
  find(hi: number, lo: number): number;
  /** Read the home entries of keys hi/lo[from, to) ahead of finds and inserts (pure read; returns a value derived from them). */
  warm(hi: Uint32Array, lo: Uint32Array, from: number, to: number): number;
  /** A single read of the key's home entry, for warming. */
  peek(hi: number, lo: number): number;
  /**
   * Look up keys hi/lo[from, to) in order and stop at the first absent one; returns its index (to
   * when all are present). The values found go to outIds[from ..] when given.
   */
  findRun(hi: Uint32Array, lo: Uint32Array, from: number, to: number, outIds: Int32Array | null): number;
  /**
   * Keys ever inserted, and keys ever removed (clear() counts as one removal). While both stay
   * the same the table holds the same keys; while removals stays the same every key it held is
   * still there (readers that verified a prefix may reuse it).
   */
  readonly insertions: number;
  readonly removals: number;
  /** Insert a key that is not present (at most maxEntries keys). */
  insert(hi: number, lo: number, v: number): void;
  /** Remove the key; returns its value or -1 if absent. */
  remove(hi: number, lo: number): number;
  /** Remove the key without reading its value (which may cost a cache miss); returns whether it was present. */
  discard(hi: number, lo: number): boolean;
  /** Empty the table and give back its memory. */
  clear(): void;
}

/** What a reader outside the engine may use of a prefix cache's table (read only). */
export type PrefixCacheLookup = Pick<BlockTable, 'findRun' | 'insertions' | 'removals'>;

/**
 * Backward-shift deletion with linear probing: whether the entry at slot j, whose home slot is
 * `home`, may move into the hole at `hole` (its home does not lie cyclically in (hole, j]).
 */
export function canShiftInto(hole: number, j: number, home: number): boolean {
  return hole <= j ? !(home > hole && home <= j) : !(home > hole || home <= j);
}

export class BlockHashTable implements BlockTable {
  private cap: number;
  private readonly maxCapacity: number;
  private mask: number;
  private cells: Int32Array;
  private count: number;
  /** Keeps findRun()'s read-ahead observable. */
  warmSink = 0;
  insertions = 0;
  removals = 0;

  /** `reserve`: allocate the capacity maxEntries needs now instead of growing to it. */
  constructor(maxEntries: number, reserve = false) {
    let max = INITIAL_CAPACITY;
    while (max < maxEntries * 2) max *= 2;
    this.maxCapacity = max;
    this.cap = reserve ? max : INITIAL_CAPACITY;
    this.mask = this.cap - 1;
    this.cells = new Int32Array(this.cap * 4);
    this.count = 0;
  }

  get size(): number {
    return this.count;
  }

  /** Entries the table has room for now (grows on demand). */
  get capacity(): number {
    return this.cap;
  }

  get allocatedBytes(): number {
    return this.cells.byteLength;
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
      if (v === 0) return -1;
      if (cells[c + 2] === l && cells[c + 1] === h) return v - 1;
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
    for (let b = from; b < to; b++) acc ^= (cells[this.home(hi[b] as number, lo[b] as number) << 2] as number) - 1;
    return acc;
  }

  findRun(hi: Uint32Array, lo: Uint32Array, from: number, to: number, outIds: Int32Array | null): number {
    let b = from;
    let warmed = from;
    let sink = 0;
    while (b < to) {
      if (b === warmed) {
        // Read the next few home entries together: their misses overlap (a short step wastes
        // little when the run ends).
        warmed = to - b > FIND_RUN_WARM ? b + FIND_RUN_WARM : to;
        sink ^= this.warm(hi, lo, b, warmed);
      }
      const id = this.find(hi[b] as number, lo[b] as number);
      if (id < 0) break;
      if (outIds !== null) outIds[b] = id;
      b++;
    }
    this.warmSink ^= sink;
    return b;
  }

  /** The value in the key's home entry (whatever key it holds): a single read, for warming. */
  peek(hi: number, lo: number): number {
    return (this.cells[this.home(hi, lo) << 2] as number) - 1;
  }

  /** Insert a key that is not present. The caller guarantees at most maxEntries entries. */
  insert(hi: number, lo: number, v: number): void {
    if ((this.count + 1) * 2 > this.cap && this.cap < this.maxCapacity) this.grow();
    const mask = this.mask;
    const cells = this.cells;
    let i = this.home(hi, lo);
    while ((cells[i << 2] as number) !== 0) i = (i + 1) & mask;
    const c = i << 2;
    cells[c] = v + 1;
    cells[c + 1] = hi | 0;
    cells[c + 2] = lo | 0;
    this.count++;
    this.insertions++;
  }

  discard(hi: number, lo: number): boolean {
    return this.remove(hi, lo) >= 0;
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
      if (v === 0) return -1;
      if (cells[c + 2] === l && cells[c + 1] === h) break;
      i = (i + 1) & mask;
    }
    const removed = (cells[i << 2] as number) - 1;
    // Backward shift: pull later entries of the probe run into the hole when their home slot
    // does not lie cyclically in (hole, j].
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const cj = j << 2;
      const v = cells[cj] as number;
      if (v === 0) break;
      const kh = cells[cj + 1] as number;
      const kl = cells[cj + 2] as number;
      if (canShiftInto(hole, j, this.home(kh, kl))) {
        const ch = hole << 2;
        cells[ch] = v;
        cells[ch + 1] = kh;
        cells[ch + 2] = kl;
        hole = j;
      }
    }
    cells[hole << 2] = 0;
    this.count--;
    this.removals++;
    return removed;
  }

  /** Empty the table and give back its memory (back to the initial size). */
  clear(): void {
    if (this.cap !== INITIAL_CAPACITY) {
      this.cap = INITIAL_CAPACITY;
      this.mask = this.cap - 1;
      this.cells = new Int32Array(this.cap * 4);
    } else if (this.count > 0) {
      this.cells.fill(0);
    }
    this.count = 0;
    this.removals++;
  }

  /** Double the capacity and re-insert every entry. */
  private grow(): void {
    const old = this.cells;
    this.cap *= 2;
    this.mask = this.cap - 1;
    const cells = new Int32Array(this.cap * 4);
    const mask = this.mask;
    for (let c = 0; c < old.length; c += 4) {
      const v = old[c] as number;
      if (v === 0) continue;
      const kh = old[c + 1] as number;
      const kl = old[c + 2] as number;
      let i = this.home(kh, kl);
      while ((cells[i << 2] as number) !== 0) i = (i + 1) & mask;
      const d = i << 2;
      cells[d] = v;
      cells[d + 1] = kh;
      cells[d + 2] = kl;
    }
    this.cells = cells;
  }
}
