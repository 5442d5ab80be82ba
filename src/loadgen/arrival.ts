/**
 * Open-loop arrival processes (vllm bench serve / Dynamo ArrivalSpec): gaps between request sends.
 * constant: 1000/rate ms; poisson: exponential gaps, mean 1000/rate; gamma: gamma gaps with
 * shape = burstiness and mean 1000/rate (burstiness 1 is Poisson, < 1 burstier, > 1 smoother).
 */
import { Rng } from './rng.js';

export const ARRIVALS = ['poisson', 'constant', 'gamma'] as const;
export type ArrivalKind = (typeof ARRIVALS)[number];

export class ArrivalProcess {
  readonly kind: ArrivalKind;
  readonly ratePerS: number;
  readonly burstiness: number;
  private readonly rng: Rng;
  private readonly meanGapMs: number;

  constructor(kind: ArrivalKind, ratePerS: number, burstiness: number, seed: number) {
    if (!(ratePerS > 0) || !Number.isFinite(ratePerS)) throw new RangeError(`arrival rate must be a finite number > 0, got ${ratePerS}`);
    if (!(burstiness > 0) || !Number.isFinite(burstiness)) throw new RangeError(`burstiness must be a finite number > 0, got ${burstiness}`);
    this.kind = kind;
    this.ratePerS = ratePerS;
    this.burstiness = burstiness;
    this.rng = new Rng(seed);
    this.meanGapMs = 1000 / ratePerS;
  }

  /** Milliseconds from the previous send to the next. */
  nextGapMs(): number {
    switch (this.kind) {
      case 'constant':
        return this.meanGapMs;
      case 'poisson':
        return this.rng.exponential(this.meanGapMs);
      case 'gamma':
        return this.rng.gamma(this.burstiness, this.meanGapMs / this.burstiness);
    }
  }
}
