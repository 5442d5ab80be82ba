/**
 * Self-contained HTML report: summary cards, one histogram + CDF per distribution, one line chart
 * per time series. Plots are SVG drawn here (server-side), styles come from theme.ts; the file has
 * no scripts and no external resources.
 */
import { BASE_CSS, FONTS, PALETTE, seriesColor } from './theme.js';
import { percentile, sortedCopy, summarize } from './stats.js';

export interface HtmlReportInput {
  title: string;
  subtitle?: string;
  summary: Array<[string, string | number]>;
  distributions: Array<{ name: string; unit: string; values: ArrayLike<number> }>;
  series: Array<{ name: string; unit: string; t: ArrayLike<number>; v: ArrayLike<number> }>;
}

const W = 560;
const H = 230;
const M = { l: 58, r: 46, t: 12, b: 34 };
const MAX_BINS = 40;
const MAX_LINE_POINTS = 480;

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Compact human number: 1 234 567 -> 1.23M, 0.000123 -> 0.000123, 12.345 -> 12.3. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  if (a >= 1e9) return `${trim(v / 1e9, 2)}G`;
  if (a >= 1e6) return `${trim(v / 1e6, 2)}M`;
  if (a >= 1e4) return `${trim(v / 1e3, 1)}k`;
  if (a >= 100) return trim(v, 0);
  if (a >= 10) return trim(v, 1);
  if (a >= 1) return trim(v, 2);
  if (a === 0) return '0';
  return Number(v.toPrecision(3)).toString();
}

function trim(v: number, digits: number): string {
  return Number(v.toFixed(digits)).toString();
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    return niceTicks(lo - d, lo + d, count);
  }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const first = Math.ceil(lo / step - 1e-9) * step;
  const out: number[] = [];
  for (let v = first; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function svgOpen(label: string): string {
  return `<svg viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${escapeHtml(label)}" font-family="${escapeHtml(FONTS.sans)}" font-size="11">`;
}

function axes(xTicks: number[], xPos: (v: number) => number, yTicks: number[], yPos: (v: number) => number, xLabel: string): string {
  const parts: string[] = [];
  for (const t of yTicks) {
    const y = yPos(t).toFixed(1);
    parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${y}" y2="${y}" stroke="${PALETTE.grid}"/>`);
    parts.push(`<text x="${M.l - 8}" y="${y}" dy="3.5" text-anchor="end" fill="${PALETTE.textMuted}">${formatNumber(t)}</text>`);
  }
  const yb = H - M.b;
  parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${yb}" y2="${yb}" stroke="${PALETTE.axis}"/>`);
  for (const t of xTicks) {
    const x = xPos(t).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${yb}" y2="${yb + 4}" stroke="${PALETTE.axis}"/>`);
    parts.push(`<text x="${x}" y="${yb + 16}" text-anchor="middle" fill="${PALETTE.textMuted}">${formatNumber(t)}</text>`);
  }
  parts.push(`<text x="${(M.l + W - M.r) / 2}" y="${H - 3}" text-anchor="middle" fill="${PALETTE.textMuted}">${escapeHtml(xLabel)}</text>`);
  return parts.join('');
}

/** Histogram bars (count, left axis) with the empirical CDF (right axis, 0–100 %) on top. */
export function histogramSvg(name: string, unit: string, values: ArrayLike<number>): string {
  const s = sortedCopy(values);
  const n = s.length;
  if (n === 0) return `<div class="mf-empty">no samples</div>`;
  const lo = s[0] as number;
  // Clip the display range at p99.5 so one outlier does not squash the body; the last bar holds
  // everything above and is labelled.
  const hiClip = percentile(s, 99.5);
  const hiMax = s[n - 1] as number;
  const hi = hiClip > lo ? hiClip : hiMax > lo ? hiMax : lo + 1;
  const bins = Math.max(1, Math.min(MAX_BINS, Math.ceil(Math.sqrt(n))));
  const width = (hi - lo) / bins;
  const counts = new Float64Array(bins);
  for (let i = 0; i < n; i++) {
    let b = Math.floor(((s[i] as number) - lo) / width);
    if (b >= bins) b = bins - 1;
    if (b < 0) b = 0;
    counts[b] = (counts[b] as number) + 1;
  }
  let maxCount = 0;
  for (let b = 0; b < bins; b++) maxCount = Math.max(maxCount, counts[b] as number);
  const xTicks = niceTicks(lo, hi, 6).filter((t) => t >= lo && t <= hi);
  const yTicks = niceTicks(0, maxCount, 4).filter((t) => t >= 0);
  const yMax = Math.max(maxCount, yTicks[yTicks.length - 1] ?? maxCount);
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const xPos = (v: number): number => M.l + ((v - lo) / (hi - lo)) * pw;
  const yPos = (v: number): number => M.t + ph - (v / yMax) * ph;
  const xLabel = hiMax > hi ? `${unit} (last bar holds values up to ${formatNumber(hiMax)})` : unit;
  const parts: string[] = [svgOpen(`${name} histogram`), axes(xTicks, xPos, yTicks, yPos, xLabel)];
  const barW = pw / bins;
  for (let b = 0; b < bins; b++) {
    const c = counts[b] as number;
    if (c === 0) continue;
    const y = yPos(c);
    parts.push(`<rect class="mf-bar" x="${(M.l + b * barW + 0.5).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(0.5, barW - 1).toFixed(1)}" height="${(M.t + ph - y).toFixed(1)}" rx="1.5" fill="${PALETTE.accent}" fill-opacity="0.78"><title>${formatNumber(lo + b * width)}–${formatNumber(lo + (b + 1) * width)} ${escapeHtml(unit)}: ${c}</title></rect>`);
  }
  // CDF: one point per bin edge plus the exact sample steps would be heavy; sample ≤ 200 points.
  const steps = Math.min(200, n);
  const pts: string[] = [];
  for (let k = 0; k <= steps; k++) {
    const idx = Math.min(n - 1, Math.floor((k / steps) * (n - 1)));
    const v = Math.min(hi, s[idx] as number);
    const frac = (idx + 1) / n;
    pts.push(`${xPos(v).toFixed(1)},${(M.t + ph - frac * ph).toFixed(1)}`);
  }
  parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${PALETTE.warn}" stroke-width="2" stroke-linejoin="round"/>`);
  for (const q of [0, 50, 90, 100]) {
    const y = (M.t + ph - (q / 100) * ph).toFixed(1);
    parts.push(`<text x="${W - M.r + 6}" y="${y}" dy="3.5" fill="${PALETTE.warn}">${q}%</text>`);
  }
  for (const [p, label] of [[50, 'p50'], [99, 'p99']] as const) {
    const v = percentile(s, p);
    if (v > hi) continue;
    const x = xPos(v).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${M.t}" y2="${M.t + ph}" stroke="${PALETTE.text}" stroke-dasharray="3 3" stroke-opacity="0.55"/>`);
    parts.push(`<text x="${x}" y="${M.t + 10}" dx="4" fill="${PALETTE.text}" fill-opacity="0.75">${label}</text>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

/** Line chart of v over t with a soft area fill; long series are reduced to bucket means. */
export function lineChartSvg(name: string, unit: string, t: ArrayLike<number>, v: ArrayLike<number>, colorIndex = 0): string {
  const n = Math.min(t.length, v.length);
  if (n === 0) return `<div class="mf-empty">no samples</div>`;
  const xs: number[] = [];
  const ys: number[] = [];
  if (n <= MAX_LINE_POINTS) {
    for (let i = 0; i < n; i++) {
      xs.push(t[i] as number);
      ys.push(v[i] as number);
    }
  } else {
    const per = n / MAX_LINE_POINTS;
    for (let b = 0; b < MAX_LINE_POINTS; b++) {
      const from = Math.floor(b * per);
      const to = Math.min(n, Math.floor((b + 1) * per));
      let st = 0;
      let sv = 0;
      for (let i = from; i < to; i++) {
        st += t[i] as number;
        sv += v[i] as number;
      }
      xs.push(st / (to - from));
      ys.push(sv / (to - from));
    }
  }
  let x0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  let y0 = Infinity;
  for (let i = 0; i < xs.length; i++) {
    x0 = Math.min(x0, xs[i] as number);
    x1 = Math.max(x1, xs[i] as number);
    y0 = Math.min(y0, ys[i] as number);
    y1 = Math.max(y1, ys[i] as number);
  }
  if (!(x1 > x0)) x1 = x0 + 1;
  const yLo = Math.min(0, y0);
  const yTicks = niceTicks(yLo, y1 > yLo ? y1 : yLo + 1, 4);
  const yHi = Math.max(y1, yTicks[yTicks.length - 1] ?? y1);
  const yMin = Math.min(yLo, yTicks[0] ?? yLo);
  const xTicks = niceTicks(x0, x1, 6).filter((x) => x >= x0 && x <= x1);
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const xPos = (x: number): number => M.l + ((x - x0) / (x1 - x0)) * pw;
  const yPos = (y: number): number => M.t + ph - ((y - yMin) / (yHi - yMin || 1)) * ph;
  const color = seriesColor(colorIndex);
  const pts = xs.map((x, i) => `${xPos(x).toFixed(1)},${yPos(ys[i] as number).toFixed(1)}`);
  const base = yPos(Math.max(yMin, 0)).toFixed(1);
  const parts: string[] = [svgOpen(`${name} over time`), axes(xTicks, xPos, yTicks, yPos, 'time (s)')];
  if (pts.length > 1) {
    parts.push(`<polygon points="${xPos(xs[0] as number).toFixed(1)},${base} ${pts.join(' ')} ${xPos(xs[xs.length - 1] as number).toFixed(1)},${base}" fill="${color}" fill-opacity="0.12"/>`);
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2" stroke-linejoin="round"/>`);
  } else {
    parts.push(`<circle cx="${xPos(xs[0] as number).toFixed(1)}" cy="${yPos(ys[0] as number).toFixed(1)}" r="3" fill="${color}"/>`);
  }
  parts.push(`<text x="${M.l + 4}" y="${M.t + 10}" fill="${PALETTE.textMuted}">${escapeHtml(unit)}</text>`);
  parts.push('</svg>');
  return parts.join('');
}

function chips(values: ArrayLike<number>): string {
  const s = summarize(values);
  const items: Array<[string, number]> = [['n', s.count], ['mean', s.mean], ['p50', s.median], ['p90', s.p90], ['p99', s.p99], ['max', s.max]];
  return `<div class="mf-stats">${items.map(([k, v]) => `<span class="mf-chip"><b>${k}</b>${formatNumber(v)}</span>`).join('')}</div>`;
}

export function renderHtmlReport(input: HtmlReportInput): string {
  const cards = input.summary
    .map(([k, v]) => `<div class="mf-card"><div class="mf-card-label" title="${escapeHtml(k)}">${escapeHtml(k)}</div><div class="mf-card-value">${escapeHtml(typeof v === 'number' ? formatNumber(v) : v)}</div></div>`)
    .join('');
  const dists = input.distributions
    .map((d) => `<section class="mf-panel"><div class="mf-panel-title"><h3>${escapeHtml(d.name)}</h3><span class="mf-unit">${escapeHtml(d.unit)}</span></div>${chips(d.values)}<div class="mf-legend"><span><i style="background:${PALETTE.accent}"></i>count</span><span><i style="background:${PALETTE.warn}"></i>cumulative %</span></div>${histogramSvg(d.name, d.unit, d.values)}</section>`)
    .join('');
  const series = input.series
    .map((s, i) => `<section class="mf-panel"><div class="mf-panel-title"><h3>${escapeHtml(s.name)}</h3><span class="mf-unit">${escapeHtml(s.unit)}</span></div>${lineChartSvg(s.name, s.unit, s.t, s.v, i + 1)}</section>`)
    .join('');
  const sub = input.subtitle === undefined ? '' : `<div class="mf-sub">${escapeHtml(input.subtitle)}</div>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(input.title)}</title><style>${BASE_CSS}</style></head>
<body><header class="mf-header"><h1><span class="mf-brand">mockfleet</span>${escapeHtml(input.title)}</h1>${sub}</header>
<main class="mf-main">
<div class="mf-section">Summary</div><div class="mf-cards">${cards}</div>
${dists === '' ? '' : `<div class="mf-section">Distributions</div><div class="mf-grid">${dists}</div>`}
${series === '' ? '' : `<div class="mf-section">Over time</div><div class="mf-grid">${series}</div>`}
<div class="mf-footer">Percentiles: element at rank round((n − 1) · p / 100) of the sorted values. Histograms clip at p99.5; the cumulative line covers all samples.</div>
</main></body></html>
`;
}
