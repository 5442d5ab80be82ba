import { PerfModelError } from '../util/errors.js';
import type { PerfModel } from './types.js';

/**
 * Modeled GPU time per pass (Dynamo `common/perf_model.rs`, engine-spec §7). Pure functions of the
 * batch shape; all results are unscaled milliseconds.
 */

/** Tokens that actually need compute this pass, as Dynamo derives them from the batch aggregate. */
function newPrefillTokens(count: number, totalIsl: number, totalPrefix: number): number {
  const meanIsl = Math.floor(totalIsl / count);
  const meanPrefix = Math.floor(totalPrefix / count);
  return count * (meanIsl - meanPrefix);
}

/** Polynomial fit (H200, Dynamo default): prefill quadratic in new tokens, decode quadratic in KV usage. */
export function createPolynomialPerfModel(): PerfModel {
  return {
    prefillMs(count: number, totalIsl: number, totalPrefix: number): number {
      if (count <= 0) return 0;
      const t = newPrefillTokens(count, totalIsl, totalPrefix);
      if (t <= 0) return 0;
      const ms = 4.209989e-7 * t * t + 1.518344e-2 * t + 16.50142;
      return ms > 0 ? ms : 0;
    },
    decodeMs(activeKvTokens: number, totalKvTokens: number, _meanContextLength: number): number {
      const p = totalKvTokens > 0 ? activeKvTokens / totalKvTokens : 1;
      const ms = -25.74 * p * p + 54.01 * p + 5.74;
      // The floor keeps consecutive decode passes from sharing a timestamp.
      return ms > 1 ? ms : 1;
    },
    decodeIgnoresContext: true,
  };
}

/**
 * Measured profile (the arrays of Dynamo's `--planner-profile-data` NPZ).
 * decodeItl is row-major: decodeItl[r * decodeContextLength.length + c] is the ITL (ms) at
 * decodeActiveKvTokens[r] active KV tokens and mean context length decodeContextLength[c].
 */
export interface PerfProfileArrays {
  readonly prefillIsl: Float64Array;
  readonly prefillTtftMs: Float64Array;
  readonly decodeActiveKvTokens: Float64Array;
  readonly decodeContextLength: Float64Array;
  readonly decodeItl: Float64Array;
}

/** Index i of the segment [xs[i], xs[i+1]] used for x; the end segments extrapolate. */
function segment(xs: Float64Array, x: number): number {
  const n = xs.length;
  if (x <= (xs[1] as number)) return 0;
  if (x >= (xs[n - 2] as number)) return n - 2;
  let lo = 1;
  let hi = n - 2;
  // Invariant: xs[lo] < x < xs[hi]... narrowed by bisection until hi = lo + 1.
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((xs[mid] as number) <= x) lo = mid;
    else hi = mid;
  }
  return lo;
}

function checkAxis(name: string, xs: Float64Array): void {
  if (xs.length < 2) throw new PerfModelError(`profile array ${name} needs at least 2 points, got ${xs.length}`);
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i] as number;
    if (!Number.isFinite(v)) throw new PerfModelError(`profile array ${name}[${i}] is not a finite number`);
    if (i > 0 && v <= (xs[i - 1] as number)) {
      throw new PerfModelError(`profile array ${name} must be strictly increasing (index ${i})`);
    }
  }
}

function checkValues(name: string, ys: Float64Array): void {
  for (let i = 0; i < ys.length; i++) {
    if (!Number.isFinite(ys[i] as number)) throw new PerfModelError(`profile array ${name}[${i}] is not a finite number`);
  }
}

/**
 * Profile interpolation (engine-spec §7.2): prefill = 1-D linear interpolation of TTFT over new
 * prompt tokens, extrapolated beyond the grid and clamped at 0 like the polynomial; decode =
 * bilinear interpolation of ITL over (active KV tokens, mean context length), extrapolated and
 * floored at 1 ms. Unlike Dynamo (`unwrap_or(0.0)`), a prediction that is not a finite number
 * throws PerfModelError instead of becoming a free pass. The arrays are copied.
 */
export function createInterpolatedPerfModel(arrays: PerfProfileArrays): PerfModel {
  const px = Float64Array.from(arrays.prefillIsl);
  const py = Float64Array.from(arrays.prefillTtftMs);
  const dx = Float64Array.from(arrays.decodeActiveKvTokens);
  const dy = Float64Array.from(arrays.decodeContextLength);
  const dz = Float64Array.from(arrays.decodeItl);
  checkAxis('prefill_isl', px);
  if (py.length !== px.length) {
    throw new PerfModelError(`profile array prefill_ttft_ms has ${py.length} values, prefill_isl has ${px.length}`);
  }
  checkValues('prefill_ttft_ms', py);
  checkAxis('decode_active_kv_tokens', dx);
  checkAxis('decode_context_length', dy);
  const cols = dy.length;
  if (dz.length !== dx.length * cols) {
    throw new PerfModelError(`profile array decode_itl has ${dz.length} values, expected ${dx.length} × ${cols}`);
  }
  checkValues('decode_itl', dz);

  return {
    prefillMs(count: number, totalIsl: number, totalPrefix: number): number {
      if (count <= 0) return 0;
      const t = newPrefillTokens(count, totalIsl, totalPrefix);
      if (t <= 0) return 0;
      const i = segment(px, t);
      const x0 = px[i] as number;
      const x1 = px[i + 1] as number;
      const y0 = py[i] as number;
      const ms = y0 + ((py[i + 1] as number) - y0) * ((t - x0) / (x1 - x0));
      if (!Number.isFinite(ms)) throw new PerfModelError(`prefill prediction at ${t} new tokens is not finite`);
      return ms > 0 ? ms : 0;
    },
    decodeMs(activeKvTokens: number, _totalKvTokens: number, meanContextLength: number): number {
      const r = segment(dx, activeKvTokens);
      const c = segment(dy, meanContextLength);
      const fx = (activeKvTokens - (dx[r] as number)) / ((dx[r + 1] as number) - (dx[r] as number));
      const fy = (meanContextLength - (dy[c] as number)) / ((dy[c + 1] as number) - (dy[c] as number));
      const z00 = dz[r * cols + c] as number;
      const z01 = dz[r * cols + c + 1] as number;
      const z10 = dz[(r + 1) * cols + c] as number;
      const z11 = dz[(r + 1) * cols + c + 1] as number;
      const z0 = z00 + (z01 - z00) * fy;
      const z1 = z10 + (z11 - z10) * fy;
      const ms = z0 + (z1 - z0) * fx;
      if (!Number.isFinite(ms)) {
        throw new PerfModelError(`decode prediction at ${activeKvTokens} active KV tokens, context ${meanContextLength} is not finite`);
      }
      return ms > 1 ? ms : 1;
    },
  };
}
