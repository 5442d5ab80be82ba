/**
 * Prefix-trie edges over trace block ids: an open-addressing map (parent node, id) → child node,
 * allocation-free on lookups. Node 0 is the root; child 0 marks an empty slot, so children are ≥ 1.
 * Used by the ideal-reuse statistics and the synthesizer.
 *
 * A slot is 4 int32 words [child, parent, id, key] in one array, so a probe touches one cache
 * line (the tables reach millions of slots, far beyond the caches: three parallel arrays cost up to
 * three misses per probe).
 *
 * An edge's home slot comes from its 32-bit key, a mix of (parent, id) kept in the slot for growing.
 */
const STRIDE = 4;

export class ChildTable {
  /** The default key of an edge: a mix of parent and id. */
  static keyOf(parent: number, id: number): number {
    return Math.imul(id ^ Math.imul(parent, 0x85ebca6b), 0x9e3779b1);
  }

  private slots = new Int32Array(0);
  private mask = 0;
  private count = 0;
  /** `expectedEdges` sizes the table up front (it still doubles past half full). */
  constructor(expectedEdges = 0) {
    let cap = 1 << 12;
    while (cap < 2 * expectedEdges) cap *= 2;
    this.allocate(cap);
  }
  private slotOf(key: number): number {
    return (key ^ (key >>> 16)) & this.mask;
  }
  get(parent: number, id: number): number {
    const t = this.slots;
    let s = this.slotOf(ChildTable.keyOf(parent, id));
    for (;;) {
      const at = s * STRIDE;
      const c = t[at] as number;
      if (c === 0 || (t[at + 2] === id && t[at + 1] === parent)) return c;
      s = (s + 1) & this.mask;
    }
  }
  set(parent: number, id: number, child: number): void {
    this.put(parent, id, child, ChildTable.keyOf(parent, id));
  }
  private put(parent: number, id: number, child: number, key: number): void {
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    const t = this.slots;
    let s = this.slotOf(key);
    while (t[s * STRIDE] !== 0) s = (s + 1) & this.mask;
    const at = s * STRIDE;
    t[at] = child;
    t[at + 1] = parent;
    t[at + 2] = id;
    t[at + 3] = key;
    this.count++;
  }
  private allocate(cap: number): void {
    this.slots = new Int32Array(cap * STRIDE);
    this.mask = cap - 1;
    this.count = 0;
  }
  private grow(): void {
    const old = this.slots;
    this.allocate((this.mask + 1) * 2);
    for (let at = 0; at < old.length; at += STRIDE) {
      if (old[at] !== 0) this.put(old[at + 1] as number, old[at + 2] as number, old[at] as number, old[at + 3] as number);
    }
  }
}
