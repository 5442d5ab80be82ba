/**
 * Request id (a non-negative int32) → slot, for the engine's live requests. Open addressing with
 * linear probing and backward-shift deletion over two Int32Arrays (key −1 = empty), at most half
 * full. It replaces a `Map<number, number>`, whose deletions shrink and rehash its backing store
 * as an engine's few live requests come and go (an allocation every few requests, and most of a
 * replay's per-request map time); here a deletion moves at most a few neighbours and nothing is
 * allocated until the live count doubles.
 */
import { canShiftInto } from './kv/hash-table.js';

const EMPTY = -1;
const INITIAL_CAPACITY = 16;

export class RequestSlotMap {
  private keys: Int32Array;
  private values: Int32Array;
  private mask: number;
  /** 32 − log2(capacity): a key's home is the top bits of its Fibonacci hash. */
  private shift: number;
  private count = 0;

  constructor() {
    this.keys = new Int32Array(INITIAL_CAPACITY).fill(EMPTY);
    this.values = new Int32Array(INITIAL_CAPACITY);
    this.mask = INITIAL_CAPACITY - 1;
    this.shift = 32 - Math.log2(INITIAL_CAPACITY);
  }

  get size(): number {
    return this.count;
  }

  private home(id: number): number {
    return Math.imul(id, 0x9e3779b1) >>> this.shift;
  }

  private indexOf(id: number): number {
    // −1 marks empty cells: no negative id is ever present.
    if (id < 0) return -1;
    const keys = this.keys, mask = this.mask;
    for (let i = this.home(id); ; i = (i + 1) & mask) {
      const k = keys[i] as number;
      if (k === id) return i;
      if (k === EMPTY) return -1;
    }
  }

  /** The slot of a live request id, or −1. */
  get(id: number): number {
    const i = this.indexOf(id);
    return i < 0 ? -1 : (this.values[i] as number);
  }

  has(id: number): boolean {
    return this.indexOf(id) >= 0;
  }

  /** Map an id that is not present (the engine checks first). */
  set(id: number, slot: number): void {
    if ((this.count + 1) * 2 > this.keys.length) this.grow();
    const keys = this.keys, mask = this.mask;
    let i = this.home(id);
    while ((keys[i] as number) !== EMPTY) i = (i + 1) & mask;
    keys[i] = id;
    this.values[i] = slot;
    this.count++;
  }

  /** Unmap an id; false if it was not present. */
  delete(id: number): boolean {
    let hole = this.indexOf(id);
    if (hole < 0) return false;
    const keys = this.keys, values = this.values, mask = this.mask;
    this.count--;
    // Pull later keys of the probe run into the hole when their home does not lie after it.
    for (let j = (hole + 1) & mask; ; j = (j + 1) & mask) {
      const k = keys[j] as number;
      if (k === EMPTY) break;
      if (canShiftInto(hole, j, this.home(k))) {
        keys[hole] = k;
        values[hole] = values[j] as number;
        hole = j;
      }
    }
    keys[hole] = EMPTY;
    return true;
  }

  private grow(): void {
    const oldKeys = this.keys, oldValues = this.values;
    const cap = oldKeys.length * 2;
    this.keys = new Int32Array(cap).fill(EMPTY);
    this.values = new Int32Array(cap);
    this.mask = cap - 1;
    this.shift--;
    const keys = this.keys, mask = this.mask;
    for (let e = 0; e < oldKeys.length; e++) {
      const k = oldKeys[e] as number;
      if (k === EMPTY) continue;
      let i = this.home(k);
      while ((keys[i] as number) !== EMPTY) i = (i + 1) & mask;
      keys[i] = k;
      this.values[i] = oldValues[e] as number;
    }
  }
}
