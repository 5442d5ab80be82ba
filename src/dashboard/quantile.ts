/**
 * Quantile of a histogram from non-cumulative bucket counts, as Prometheus' histogram_quantile
 * does it: find the bucket holding rank q*total and interpolate linearly inside it. The lower
 * edge of the first bucket is 0; a rank falling in +Inf answers the largest finite bound.
 *
 *   bounds  [ b0 ,  b1 ,  b2 , ... , bN-1 ]
 *   counts  [ c0 ,  c1 ,  c2 , ... , cN-1 , c+Inf ]     (counts.length = bounds.length + 1)
 */

/** Returns null when the histogram is empty (no observations in the window). */
export function histogramQuantile(q: number, bounds: readonly number[], counts: ArrayLike<number>, start = 0): number | null {
  const n = bounds.length;
  let total = 0;
  for (let i = 0; i <= n; i++) total += counts[start + i] as number;
  if (!(total > 0)) return null;
  const rank = Math.min(1, Math.max(0, q)) * total;
  let cum = 0;
  for (let i = 0; i < n; i++) {
    const c = counts[start + i] as number;
    if (cum + c >= rank && c > 0) {
      const lower = i === 0 ? 0 : (bounds[i - 1] as number);
      const upper = bounds[i] as number;
      return lower + ((upper - lower) * (rank - cum)) / c;
    }
    cum += c;
  }
  return n === 0 ? null : (bounds[n - 1] as number);
}
