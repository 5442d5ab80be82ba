/**
 * A latency distribution in fixed memory: a DDSketch (@datadog/sketches-js, relative accuracy
 * 0.5 %) for the percentiles, plus exact count, min, max, mean and population std (weighted
 * Welford). Percentiles follow the rule of every mockfleet report — the element at rank
 * round((n − 1) · p / 100) — read from the sketch's bins, so each is within 0.5 % (relative) of
 * the exact value, clamped to the exact [min, max]. Memory is a few KiB whatever the count
 * (one bin per 1 % step of the value range in use).
 */
import { DDSketch } from '@datadog/sketches-js';

import type { Summary } from './stats.js';

type Mapping = DDSketch['mapping'];

export const SKETCH_RELATIVE_ACCURACY = 0.005;

export class LatencySketch {
  private readonly sketch = new DDSketch({ relativeAccuracy: SKETCH_RELATIVE_ACCURACY });
  private n = 0;
  private mean = 0;
  private m2 = 0;
  private lo = Number.POSITIVE_INFINITY;
  private hi = Number.NEGATIVE_INFINITY;
  /** The sketch's key function in closed form, for addRun (null: call accept per value). */
  private readonly logKey = logarithmicKey(this.sketch.mapping);

  get count(): number {
    return this.n;
  }

  /** Add `value` `weight` times (weight a positive integer). Negative values are rejected. */
  add(value: number, weight = 1): void {
    if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`latency sample must be a finite number ≥ 0, got ${value}`);
    this.sketch.accept(value, weight);
    const n = this.n + weight;
    const delta = value - this.mean;
    this.mean += (delta * weight) / n;
    this.m2 += weight * delta * (value - this.mean);
    this.n = n;
    if (value < this.lo) this.lo = value;
    if (value > this.hi) this.hi = value;
  }

  /**
   * Add values[i] weights[i] times for i < n, in that order: the same state, bit for bit, as n
   * add() calls (a test compares them). For hot loops: a double passed to a call that is not
   * inlined is boxed, one allocation per call, where this takes a run of values per call (the
   * replay adds an inter-token gap per coasted pass). Consecutive values in one bin reach the
   * bin as one integer sum, which equals adding them one by one.
   */
  addRun(values: Float64Array, weights: Float64Array, n: number): void {
    for (let i = 0; i < n; i++) {
      const value = values[i] as number, weight = weights[i] as number;
      if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`latency sample must be a finite number ≥ 0, got ${value}`);
      if (!(weight > 0) || !Number.isInteger(weight)) throw new RangeError(`latency sample weight must be a positive integer, got ${weight}`);
    }
    const logKey = this.logKey;
    if (logKey === null) {
      for (let i = 0; i < n; i++) this.add(values[i] as number, weights[i] as number);
      return;
    }
    const sk = this.sketch, store = sk.store;
    const minPossible = sk.mapping.minPossible, multiplier = logKey.multiplier, keyOffset = logKey.offset;
    let count = this.n, mean = this.mean, m2 = this.m2, lo = this.lo, hi = this.hi;
    let skCount = sk.count, skSum = sk.sum, skMin = sk.min, skMax = sk.max, zeroCount = sk.zeroCount;
    let binKey = 0, binWeight = 0;
    for (let i = 0; i < n; i++) {
      const value = values[i] as number, weight = weights[i] as number;
      if (value > minPossible) {
        const key = Math.ceil(Math.log2(value) * multiplier) + keyOffset;
        if (binWeight > 0 && key === binKey) binWeight += weight;
        else {
          if (binWeight > 0) store.add(binKey, binWeight);
          binKey = key;
          binWeight = weight;
        }
      } else zeroCount += weight;
      skCount += weight;
      skSum += value * weight;
      if (value < skMin) skMin = value;
      if (value > skMax) skMax = value;
      const next = count + weight;
      const delta = value - mean;
      mean += (delta * weight) / next;
      m2 += weight * delta * (value - mean);
      count = next;
      if (value < lo) lo = value;
      if (value > hi) hi = value;
    }
    if (binWeight > 0) store.add(binKey, binWeight);
    sk.count = skCount;
    sk.sum = skSum;
    sk.min = skMin;
    sk.max = skMax;
    sk.zeroCount = zeroCount;
    this.n = count;
    this.mean = mean;
    this.m2 = m2;
    this.lo = lo;
    this.hi = hi;
  }

  /** Merge another sketch into this one (e.g. per-thread partial results). */
  merge(other: LatencySketch): void {
    if (other.n === 0) return;
    this.sketch.merge(other.sketch);
    const n = this.n + other.n;
    const delta = other.mean - this.mean;
    this.m2 += other.m2 + (delta * delta * this.n * other.n) / n;
    this.mean += (delta * other.n) / n;
    this.n = n;
    if (other.lo < this.lo) this.lo = other.lo;
    if (other.hi > this.hi) this.hi = other.hi;
  }

  /** The value at 0-based rank k of the ascending samples (approximate, see the module doc). */
  valueAtRank(k: number): number {
    if (this.n === 0) return Number.NaN;
    // The extremes are known exactly.
    if (k <= 0) return this.lo;
    if (k >= this.n - 1) return this.hi;
    const s = this.sketch;
    let v: number;
    if (k < s.zeroCount) v = 0;
    // keyAtRank(x) returns the bin whose cumulative count first exceeds x: x = k + 0.5 is rank k.
    else v = s.mapping.value(s.store.keyAtRank(k - s.zeroCount + 0.5));
    return v < this.lo ? this.lo : v > this.hi ? this.hi : v;
  }

  /** The p-th percentile: the value at rank round((n − 1) · p / 100). */
  percentile(p: number): number {
    if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be within [0, 100], got ${p}`);
    return this.valueAtRank(Math.round(((this.n - 1) * p) / 100));
  }

  summary(): Summary {
    if (this.n === 0) {
      const nan = Number.NaN;
      return { count: 0, mean: nan, min: nan, max: nan, median: nan, p50: nan, p75: nan, p90: nan, p95: nan, p99: nan, std: nan };
    }
    const median = this.percentile(50);
    return {
      count: this.n,
      mean: this.mean,
      min: this.lo,
      max: this.hi,
      median,
      p50: median,
      p75: this.percentile(75),
      p90: this.percentile(90),
      p95: this.percentile(95),
      p99: this.percentile(99),
      std: Math.sqrt(Math.max(0, this.m2 / this.n)),
    };
  }

  /**
   * `k` values at evenly spaced ranks (the (i + 0.5)/k quantiles): a fixed-size stand-in for the
   * samples when drawing a histogram or CDF.
   */
  quantileSample(k = 2000): Float64Array {
    const m = Math.min(k, this.n);
    const out = new Float64Array(m);
    for (let i = 0; i < m; i++) out[i] = this.valueAtRank(Math.floor(((i + 0.5) / m) * this.n));
    return out;
  }
}

/**
 * DDSketch's LogarithmicMapping computes a value's key as ceil(log2(value) · _multiplier) +
 * _offset (KeyMapping.key, LogarithmicMapping._logGamma in @datadog/sketches-js 2.x). Those
 * fields are not in the typed interface: take them only if the formula reproduces mapping.key on
 * values across the whole range, else null.
 */
function logarithmicKey(mapping: Mapping): { multiplier: number; offset: number } | null {
  const m = mapping as Mapping & { _multiplier?: unknown; _offset?: unknown };
  const multiplier = m._multiplier, offset = m._offset;
  if (typeof multiplier !== 'number' || typeof offset !== 'number') return null;
  for (let e = -30; e <= 30; e++) {
    for (const f of [1, 1.0049, 1.3, 1.7777, 1.999]) {
      const v = f * 2 ** e;
      if (Math.ceil(Math.log2(v) * multiplier) + offset !== mapping.key(v)) return null;
    }
  }
  return { multiplier, offset };
}
