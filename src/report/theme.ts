/**
 * mockfleet's visual language for reports and the live dashboard: one palette, one type scale, one
 * card style. Everything is inline (no CDN, no web fonts) so a saved report renders offline.
 */

export const PALETTE = {
  bg: '#f5f6fa',
  surface: '#ffffff',
  surfaceAlt: '#f0f2f8',
  border: '#e1e5ee',
  text: '#1b2130',
  textMuted: '#667085',
  grid: '#e9ecf3',
  axis: '#98a2b3',
  accent: '#4f46e5',
  accentSoft: 'rgba(79, 70, 229, 0.14)',
  header: '#111827',
  headerText: '#f9fafb',
  good: '#0e9f6e',
  warn: '#d97706',
  bad: '#dc2626',
  /** Categorical series colours, in order of use. */
  series: ['#4f46e5', '#0ea5e9', '#10b981', '#f59e0b', '#ef4444', '#8b5cf6', '#14b8a6', '#ec4899'] as const,
} as const;

export const FONTS = {
  sans: "-apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif",
  mono: "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace",
} as const;

export const RADIUS_PX = 10;
export const SHADOW = '0 1px 2px rgba(16, 24, 40, 0.06), 0 1px 3px rgba(16, 24, 40, 0.08)';

/** Series colour i (cycles). */
export function seriesColor(i: number): string {
  const s = PALETTE.series;
  return s[((i % s.length) + s.length) % s.length] as string;
}

/**
 * Base stylesheet. Classes: .mf-header (title bar), .mf-main, .mf-cards/.mf-card (summary figures:
 * .mf-card-label, .mf-card-value), .mf-grid (two-column panels), .mf-panel (chart container with
 * .mf-panel-title and .mf-stats chips), .mf-table, .mf-muted, .mf-good/.mf-warn/.mf-bad.
 */
export const BASE_CSS = `
*{box-sizing:border-box}
body{margin:0;background:${PALETTE.bg};color:${PALETTE.text};font:14px/1.45 ${FONTS.sans};-webkit-font-smoothing:antialiased}
.mf-header{background:${PALETTE.header};color:${PALETTE.headerText};padding:22px 32px 20px}
.mf-header h1{margin:0;font-size:22px;font-weight:650;letter-spacing:-0.01em}
.mf-header .mf-sub{margin-top:4px;color:#aab2c5;font-size:13px;font-family:${FONTS.mono}}
.mf-brand{display:inline-block;margin-right:10px;padding:2px 8px;border-radius:6px;background:${PALETTE.accent};font-size:12px;font-weight:700;letter-spacing:.04em;vertical-align:3px}
.mf-main{max-width:1240px;margin:0 auto;padding:24px 32px 40px}
.mf-section{margin:28px 0 12px;font-size:13px;font-weight:650;text-transform:uppercase;letter-spacing:.08em;color:${PALETTE.textMuted}}
.mf-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}
.mf-card{background:${PALETTE.surface};border:1px solid ${PALETTE.border};border-radius:${RADIUS_PX}px;box-shadow:${SHADOW};padding:14px 16px}
.mf-card-label{font-size:12px;color:${PALETTE.textMuted};line-height:1.3;min-height:2.6em}
.mf-card-value{margin-top:4px;font-size:22px;font-weight:650;font-variant-numeric:tabular-nums;letter-spacing:-0.01em;overflow-wrap:anywhere}
.mf-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
.mf-panel{background:${PALETTE.surface};border:1px solid ${PALETTE.border};border-radius:${RADIUS_PX}px;box-shadow:${SHADOW};padding:16px 18px 10px}
.mf-panel-title{display:flex;justify-content:space-between;align-items:baseline;gap:12px;margin-bottom:8px}
.mf-panel-title h3{margin:0;font-size:15px;font-weight:650}
.mf-panel-title .mf-unit{font-size:12px;color:${PALETTE.textMuted}}
.mf-stats{display:flex;flex-wrap:wrap;gap:6px;margin-bottom:6px}
.mf-chip{background:${PALETTE.surfaceAlt};border-radius:999px;padding:2px 9px;font-size:12px;font-variant-numeric:tabular-nums;color:${PALETTE.text}}
.mf-chip b{color:${PALETTE.textMuted};font-weight:500;margin-right:4px}
.mf-panel svg{display:block;width:100%;height:auto}
.mf-legend{display:flex;gap:14px;font-size:12px;color:${PALETTE.textMuted};margin:2px 0 6px}
.mf-legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.mf-table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums;background:${PALETTE.surface};border:1px solid ${PALETTE.border};border-radius:${RADIUS_PX}px;overflow:hidden}
.mf-table th,.mf-table td{padding:7px 12px;border-bottom:1px solid ${PALETTE.grid};text-align:right}
.mf-table th:first-child,.mf-table td:first-child{text-align:left}
.mf-table th{background:${PALETTE.surfaceAlt};font-size:12px;color:${PALETTE.textMuted};font-weight:600}
.mf-muted{color:${PALETTE.textMuted}}
.mf-good{color:${PALETTE.good}}.mf-warn{color:${PALETTE.warn}}.mf-bad{color:${PALETTE.bad}}
.mf-empty{padding:40px 0;text-align:center;color:${PALETTE.textMuted}}
.mf-footer{margin-top:32px;font-size:12px;color:${PALETTE.textMuted}}
`;
