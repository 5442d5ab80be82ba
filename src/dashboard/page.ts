/**
 * The dashboard page: one HTML document with inline CSS and script, no external resources.
 * Styles come from the report theme (src/report/theme.ts) plus the dashboard's own classes
 * below; the script lives in client.ts.
 */
import { BASE_CSS, FONTS, PALETTE, RADIUS_PX, SHADOW } from '../report/theme.js';
import { escapeHtml } from '../report/html.js';
import { CLIENT_JS } from './client.js';

/**
 * KV-usage colour stops (usage 0..1 -> colour), shared by the tiles and the legend. Light to
 * accent while there is room; two stops at one position make a hard step, so "nearly full"
 * (amber from 80 %) and "full" (red from 95 %) never blur into the blues.
 */
export const KV_STOPS: ReadonlyArray<readonly [number, string]> = [
  [0, '#eef0f7'],
  [0.3, '#c7d2fe'],
  [0.8, PALETTE.accent],
  [0.8, PALETTE.warn],
  [0.95, '#ea580c'],
  [0.95, PALETTE.bad],
  [1, '#991b1b'],
];

const DASHBOARD_CSS = `
.mf-header{display:flex;justify-content:space-between;align-items:flex-end;gap:16px;flex-wrap:wrap}
.db-live{display:flex;align-items:center;gap:8px;font-size:13px;color:#cbd2e1;font-family:${FONTS.mono}}
.db-dot{width:9px;height:9px;border-radius:50%;background:${PALETTE.axis}}
.db-dot.on{background:${PALETTE.good};box-shadow:0 0 0 3px rgba(14,159,110,.25)}
.db-dot.off{background:${PALETTE.warn}}
.mf-main{max-width:1480px}
.mf-cards{grid-template-columns:repeat(auto-fill,minmax(230px,1fr))}
.mf-card-sub{margin-top:2px;font-size:12px;color:${PALETTE.textMuted};font-variant-numeric:tabular-nums;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.db-panel{background:${PALETTE.surface};border:1px solid ${PALETTE.border};border-radius:${RADIUS_PX}px;box-shadow:${SHADOW};padding:14px 16px}
.db-legend{display:flex;align-items:center;gap:10px;font-size:12px;color:${PALETTE.textMuted};margin:0 0 10px;flex-wrap:wrap}
.db-scale{width:160px;height:10px;border-radius:5px;background:linear-gradient(90deg,${KV_STOPS.map(([u, c]) => `${c} ${u * 100}%`).join(',')})}
.db-workers{display:flex;flex-wrap:wrap;gap:10px}
.db-worker{border:1px solid ${PALETTE.border};border-radius:8px;padding:6px 7px 7px;background:${PALETTE.surfaceAlt}}
.db-worker-label{font-size:11px;color:${PALETTE.textMuted};margin:0 0 5px 1px;font-family:${FONTS.mono};white-space:nowrap}
.db-worker-label b{color:${PALETTE.text};font-weight:600}
.db-tiles{display:grid;grid-template-columns:repeat(var(--cols),auto);gap:4px}
.db-tile{position:relative;width:72px;height:54px;border-radius:6px;padding:4px 6px;background:${KV_STOPS[0]?.[1] ?? PALETTE.surfaceAlt};color:${PALETTE.text};font-variant-numeric:tabular-nums;cursor:default;transition:background-color .35s linear;border:1px solid rgba(16,24,40,.06)}
.db-tile .r{font-size:10px;opacity:.75;font-family:${FONTS.mono}}
.db-tile .kv{position:absolute;right:6px;top:3px;font-size:10px;opacity:.9}
.db-tile .q{position:absolute;left:6px;bottom:4px;font-size:13px;font-weight:650;letter-spacing:-.01em}
.db-tile .q i{font-style:normal;font-weight:500;opacity:.7;font-size:11px}
.db-tile.dark{color:#fff}
.db-tile .rs{display:none;position:absolute;right:-4px;bottom:-4px;min-width:16px;height:16px;padding:0 4px;border-radius:8px;background:${PALETTE.bad};color:#fff;font-size:10px;line-height:16px;text-align:center;font-weight:700;box-shadow:0 0 0 2px ${PALETTE.surface}}
.db-tile.restarted{outline:2px solid ${PALETTE.bad};outline-offset:1px}
.db-tile.restarted .rs{display:block}
.db-flat{grid-template-columns:repeat(auto-fill,72px);width:100%}
.db-compact .db-flat{grid-template-columns:repeat(auto-fill,24px)}
.db-compact .db-tiles{gap:3px}
.db-compact .db-tile{width:24px;height:24px;padding:0;border-radius:4px}
.db-compact .db-tile .r,.db-compact .db-tile .kv,.db-compact .db-tile .q{display:none}
.db-compact .db-tile .rs{min-width:9px;width:9px;height:9px;padding:0;right:-3px;bottom:-3px;font-size:0}
.db-compact .db-worker{padding:4px 5px 5px}
.db-compact .db-worker-label{font-size:10px;margin-bottom:3px}
.db-dense .db-flat{grid-template-columns:repeat(auto-fill,9px)}
.db-dense .db-tiles{gap:1px}
.db-dense .db-tile{width:9px;height:9px;border-radius:1px;border:0;transition:none}
.db-dense .db-tile.restarted{outline:1px solid ${PALETTE.bad};outline-offset:0}
.db-tip{position:fixed;z-index:10;pointer-events:none;display:none;background:${PALETTE.header};color:${PALETTE.headerText};border-radius:8px;padding:8px 10px;font-size:12px;line-height:1.5;font-variant-numeric:tabular-nums;box-shadow:0 6px 20px rgba(16,24,40,.25);min-width:170px}
.db-tip b{font-weight:650}
.db-tip .k{color:#aab2c5;display:inline-block;min-width:86px}
.mf-grid{grid-template-columns:repeat(auto-fill,minmax(440px,1fr))}
.db-chart svg{display:block;width:100%;height:auto;overflow:visible}
.db-chart .mf-panel-title{margin-bottom:4px}
.db-chart .mf-legend{margin:0 0 2px}
.db-chart .mf-legend span{font-variant-numeric:tabular-nums}
.db-chart .mf-legend span b{color:${PALETTE.text};font-weight:600;margin-left:3px}
.db-two{display:grid;grid-template-columns:minmax(300px,1fr) minmax(360px,2fr);gap:16px;align-items:start}
.db-kv{display:grid;grid-template-columns:auto 1fr;gap:6px 18px;font-variant-numeric:tabular-nums}
.db-kv dt{color:${PALETTE.textMuted};font-size:13px}
.db-kv dd{margin:0;text-align:right;font-weight:600}
.db-badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:650;background:${PALETTE.surfaceAlt};color:${PALETTE.textMuted}}
.db-badge.good{background:rgba(14,159,110,.12);color:${PALETTE.good}}
.db-badge.bad{background:rgba(220,38,38,.12);color:${PALETTE.bad}}
.db-badge.warn{background:rgba(217,119,6,.12);color:${PALETTE.warn}}
.db-scroll{max-height:330px;overflow:auto;border-radius:${RADIUS_PX}px;border:1px solid ${PALETTE.border}}
.db-scroll .mf-table{border:0;border-radius:0}
.db-scroll th{position:sticky;top:0}
.mf-table td.mono,.mf-table th.mono{font-family:${FONTS.mono};font-size:12px}
@media (max-width:860px){.db-two{grid-template-columns:1fr}.mf-main{padding:16px}}
`;

export function renderDashboardPage(modelName: string): string {
  const title = `mockfleet · ${modelName}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
<title>${escapeHtml(title)}</title>
<style>${BASE_CSS}${DASHBOARD_CSS}</style></head>
<body>
<header class="mf-header">
  <div><h1><span class="mf-brand">MOCKFLEET</span>Live dashboard</h1><div class="mf-sub" id="db-sub">${escapeHtml(modelName)}</div></div>
  <div class="db-live"><span class="db-dot" id="db-dot"></span><span id="db-status">connecting…</span></div>
</header>
<main class="mf-main">
  <div class="mf-section">Fleet now <span class="mf-muted" id="db-window" style="text-transform:none;letter-spacing:0;font-weight:400"></span></div>
  <div class="mf-cards" id="db-cards"></div>
  <div class="mf-section">Ranks <span class="mf-muted" style="text-transform:none;letter-spacing:0;font-weight:400">(coloured by KV-cache usage; running · waiting; red badge = restarts)</span></div>
  <div class="db-panel">
    <div class="db-legend"><span>KV cache 0%</span><span class="db-scale"></span><span>100%</span><span id="db-tiles-info"></span></div>
    <div class="db-workers" id="db-workers"></div>
  </div>
  <div class="mf-section">Last <span id="db-hist-span">minute</span></div>
  <div class="mf-grid" id="db-charts"></div>
  <div class="db-two">
    <div><div class="mf-section">Publisher</div><div class="db-panel"><dl class="db-kv" id="db-pub"></dl></div></div>
    <div><div class="mf-section">Thread placement</div><div class="db-scroll"><table class="mf-table" id="db-place"><thead><tr><th>Thread</th><th>Worker</th><th>DP rank</th><th>CPU</th><th>TID</th></tr></thead><tbody></tbody></table></div></div>
  </div>
  <div class="mf-footer" id="db-footer">Updates pushed over server-sent events from <span class="mono">/dashboard/events</span>.</div>
</main>
<div class="db-tip" id="db-tip"></div>
<script>window.MF_THEME=${JSON.stringify({ palette: PALETTE, kvStops: KV_STOPS, fontSans: FONTS.sans })};</script>
<script>${CLIENT_JS}</script>
</body></html>
`;
}
