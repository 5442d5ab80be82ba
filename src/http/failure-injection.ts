/**
 * Seeded random failure injection (llm-d-inference-sim `failure-injection-rate` / `failure-types`).
 * mulberry32 keeps the sequence of injected kinds reproducible for a given seed and request order.
 */
import type { FailureType } from './options.js';

export class FailureInjector {
  private readonly ratePercent: number;
  private readonly types: readonly FailureType[];
  private state: number;

  constructor(ratePercent: number, types: readonly FailureType[], seed: number) {
    this.ratePercent = ratePercent;
    this.types = types;
    this.state = seed >>> 0;
  }

  /** The failure to answer this request with, or null to serve it. */
  draw(): FailureType | null {
    if (this.ratePercent <= 0 || this.types.length === 0) return null;
    if (this.ratePercent < 100 && this.next() * 100 >= this.ratePercent) return null;
    return this.types[Math.floor(this.next() * this.types.length)] as FailureType;
  }

  private next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}
