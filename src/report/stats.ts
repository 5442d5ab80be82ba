/**
 * Summary statistics with the percentile rule shared by every mockfleet report (Dynamo replay
 * collector, interfaces.md §7): the p-th percentile is the element at rank
 * round((n − 1) · p / 100) of the ascending values. No interpolation.
 */

export interface Summary {
  count: number;
  mean: number;
  min: number;
  max: number;
  median: number;
  p50: number;
  p75: number;
  p90: number;
  p95: number;
  p99: number;
  /** Population standard deviation. */
  std: number;
}

/** The element at rank round((n − 1) · p / 100) of `sorted` (ascending). NaN when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be within [0, 100], got ${p}`);
  const rank = Math.round(((n - 1) * p) / 100);
  return sorted[rank] as number;
}

/** Ascending copy as a Float64Array (typed-array sort is numeric, not lexicographic). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] as number;
  out.sort();
  return out;
}

/**
 * count/mean/min/max/median/p75/p90/p95/p99/std of `values`. An empty input gives count 0 and NaN
 * elsewhere, so a missing metric can never pass for a measured zero.
 */
export function summarize(values: ArrayLike<number>): Summary {
  const s = sortedCopy(values);
  const n = s.length;
  if (n === 0) {
    const nan = Number.NaN;
    return { count: 0, mean: nan, min: nan, max: nan, median: nan, p50: nan, p75: nan, p90: nan, p95: nan, p99: nan, std: nan };
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i] as number;
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) {
    const d = (s[i] as number) - mean;
    sq += d * d;
  }
  const median = percentile(s, 50);
  return {
    count: n,
    mean,
    min: s[0] as number,
    max: s[n - 1] as number,
    median,
    p50: median,
    p75: percentile(s, 75),
    p90: percentile(s, 90),
    p95: percentile(s, 95),
    p99: percentile(s, 99),
    std: Math.sqrt(sq / n),
  };
}

/** A summary as a plain JSON object where NaN (no samples) becomes null. */
export function summaryToJson(s: Summary): Record<keyof Summary, number | null> {
  const f = (v: number): number | null => (Number.isFinite(v) ? v : null);
  return {
    count: s.count, mean: f(s.mean), min: f(s.min), max: f(s.max), median: f(s.median), p50: f(s.p50),
    p75: f(s.p75), p90: f(s.p90), p95: f(s.p95), p99: f(s.p99), std: f(s.std),
  };
}
