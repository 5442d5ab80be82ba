/**
 * Prefix-trie edges over trace block ids: an open-addressing map (parent node, id) → child node,
 * allocation-free on lookups. Node 0 is the root; child 0 marks an empty slot, so children are ≥ 1.
 * Used by the ideal-reuse statistics and by the replay's hash memo.
 */
export class ChildTable {
  private parent = new Int32Array(0);
  private id = new Int32Array(0);
  private child = new Int32Array(0);
  private mask = 0;
  private count = 0;
  /** `expectedEdges` sizes the table up front (it still doubles past half full). */
  constructor(expectedEdges = 0) {
    let cap = 1 << 12;
    while (cap < 2 * expectedEdges) cap *= 2;
    this.allocate(cap);
  }
  private slotOf(parent: number, id: number): number {
    const x = Math.imul(id ^ Math.imul(parent, 0x85ebca6b), 0x9e3779b1);
    return (x ^ (x >>> 16)) & this.mask;
  }
  get(parent: number, id: number): number {
    let s = this.slotOf(parent, id);
    for (;;) {
      const c = this.child[s] as number;
      if (c === 0 || (this.id[s] === id && this.parent[s] === parent)) return c;
      s = (s + 1) & this.mask;
    }
  }
  set(parent: number, id: number, child: number): void {
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    let s = this.slotOf(parent, id);
    while (this.child[s] !== 0) s = (s + 1) & this.mask;
    this.parent[s] = parent;
    this.id[s] = id;
    this.child[s] = child;
    this.count++;
  }
  private allocate(cap: number): void {
    this.parent = new Int32Array(cap);
    this.id = new Int32Array(cap);
    this.child = new Int32Array(cap);
    this.mask = cap - 1;
    this.count = 0;
  }
  private grow(): void {
    const p = this.parent, i = this.id, c = this.child;
    this.allocate(c.length * 2);
    for (let s = 0; s < c.length; s++) if (c[s] !== 0) this.set(p[s] as number, i[s] as number, c[s] as number);
  }
}

