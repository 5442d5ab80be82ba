/**
 * Open-addressing hash table from a u64 sequence hash, carried as (hi, lo) u32 halves, to a
 * non-negative int32 value (a block id). Linear probing over typed arrays allocated once, with
 * backward-shift deletion so there are no tombstones and lookups never degrade.
 *
 *   slot:   0     1     2     3   ...  capacity-1      capacity = power of two ≥ 2 × maxEntries
 *   keyHi [ h  ][    ][ h  ][ h  ]      load factor ≤ 0.5
 *   keyLo [ l  ][    ][ l  ][ l  ]
 *   value [ 7  ][ -1 ][ 3  ][ 12 ]      -1 = empty
 */
export class BlockHashTable {
  readonly capacity: number;
  private readonly mask: number;
  private readonly keyHi: Uint32Array;
  private readonly keyLo: Uint32Array;
  private readonly value: Int32Array;
  private count: number;

  constructor(maxEntries: number) {
    let cap = 16;
    while (cap < maxEntries * 2) cap *= 2;
    this.capacity = cap;
    this.mask = cap - 1;
    this.keyHi = new Uint32Array(cap);
    this.keyLo = new Uint32Array(cap);
    this.value = new Int32Array(cap).fill(-1);
    this.count = 0;
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
    const value = this.value;
    let i = this.home(hi, lo);
    for (;;) {
      const v = value[i] as number;
      if (v < 0) return -1;
      if (this.keyLo[i] === lo && this.keyHi[i] === hi) return v;
      i = (i + 1) & mask;
    }
  }

  /** Insert a key that is not present. The caller guarantees capacity (≤ maxEntries entries). */
  insert(hi: number, lo: number, v: number): void {
    const mask = this.mask;
    const value = this.value;
    let i = this.home(hi, lo);
    while ((value[i] as number) >= 0) i = (i + 1) & mask;
    this.keyHi[i] = hi;
    this.keyLo[i] = lo;
    value[i] = v;
    this.count++;
  }

  /** Remove the key; returns its value or -1 if absent. */
  remove(hi: number, lo: number): number {
    const mask = this.mask;
    const value = this.value;
    const keyHi = this.keyHi;
    const keyLo = this.keyLo;
    let i = this.home(hi, lo);
    for (;;) {
      const v = value[i] as number;
      if (v < 0) return -1;
      if (keyLo[i] === lo && keyHi[i] === hi) break;
      i = (i + 1) & mask;
    }
    const removed = value[i] as number;
    // Backward shift: pull later entries of the probe run into the hole when their home slot
    // does not lie cyclically in (hole, j].
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const v = value[j] as number;
      if (v < 0) break;
      const h = this.home(keyHi[j] as number, keyLo[j] as number);
      const inRange = hole <= j ? h > hole && h <= j : h > hole || h <= j;
      if (!inRange) {
        keyHi[hole] = keyHi[j] as number;
        keyLo[hole] = keyLo[j] as number;
        value[hole] = v;
        hole = j;
      }
    }
    value[hole] = -1;
    this.count--;
    return removed;
  }

  clear(): void {
    this.value.fill(-1);
    this.count = 0;
  }

  /** Calls fn(hi, lo, value) for every entry. Diagnostics only (allocates a closure at the caller). */
  forEachEntry(fn: (hi: number, lo: number, v: number) => void): void {
    for (let i = 0; i < this.capacity; i++) {
      const v = this.value[i] as number;
      if (v >= 0) fn(this.keyHi[i] as number, this.keyLo[i] as number, v);
    }
  }
}
