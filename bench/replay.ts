/**
 * Offline replay benchmark: the whole conversation trace (12,031 requests) on 16 workers with the
 * kv router, default engine args, virtual time; then the same replay with round robin, for the
 * routing comparison (TTFT p50/p90 and prefix reuse of both). Prints one JSON line. wall_s covers
 * the kv replay loop (engines, router, KV events); trace parsing and report building are reported
 * separately; load_avg_1m is the machine's load when the run ended (benchmarks share the cores).
 * Usage: node dist/bench/replay.js [TRACE] [NUM_WORKERS] [--no-compare]
 */
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { readMooncakeTrace } from '../src/trace/mooncake.js';
import { runOfflineReplay } from '../src/replay/offline.js';
import { replayResultsDigest } from '../src/replay/digest.js';
import type { OfflineReplayOptions } from '../src/replay/offline.js';
import { buildReplayReport } from '../src/replay/report.js';
import type { RouterPolicy } from '../src/router/index.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const compare = !process.argv.includes('--no-compare');
const trace = args[0] ?? fileURLToPath(new URL('../../data/mooncake/conversation_trace.jsonl', import.meta.url));
const workers = Number(args[1] ?? 16);

const t0 = performance.now();
const reqs = await readMooncakeTrace(trace);
const t1 = performance.now();
const opts = (router: RouterPolicy): OfflineReplayOptions => ({
  numWorkers: workers,
  dataParallelSize: 1,
  router,
  traceBlockSize: 512,
  arrivalSpeedupRatio: 1,
  speedupRatio: 1,
  decodeSpeedupRatio: 1,
  engineArgs: {},
  seed: 0,
});
const cpu0 = process.cpuUsage();
const result = runOfflineReplay(reqs, opts('kv'));
const cpu = process.cpuUsage(cpu0);
const t2 = performance.now();
const report = buildReplayReport(result);
const t3 = performance.now();
const wallS = result.wallTimeMs / 1000;
const r4 = (v: number | null): number | null => (v === null ? null : Number(v.toFixed(4)));
const r1 = (v: number | null): number | null => (v === null ? null : Number(v.toFixed(1)));
let comparison: Record<string, unknown> = {};
if (compare) {
  const rr = buildReplayReport(runOfflineReplay(reqs, opts('round_robin')));
  const kvReuse = report.prefix_cache_reused_ratio ?? Number.NaN;
  const rrReuse = rr.prefix_cache_reused_ratio ?? Number.NaN;
  comparison = {
    kv_ttft_p50_ms: r1(report.ttft_ms.median),
    kv_ttft_p90_ms: r1(report.ttft_ms.p90),
    rr_ttft_p50_ms: r1(rr.ttft_ms.median),
    rr_ttft_p90_ms: r1(rr.ttft_ms.p90),
    rr_prefix_cache_reused_ratio: r4(rrReuse),
    kv_over_rr_reuse: r4(kvReuse / rrReuse),
    kv_ttft_not_worse: (report.ttft_ms.median ?? Infinity) <= (rr.ttft_ms.median ?? -Infinity) && (report.ttft_ms.p90 ?? Infinity) <= (rr.ttft_ms.p90 ?? -Infinity),
  };
}
console.log(JSON.stringify({
  bench: 'replay',
  wall_s: Number(wallS.toFixed(3)),
  cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
  requests: report.num_requests,
  completed_requests: report.completed_requests,
  simulated_requests_per_wall_s: Number((report.num_requests / wallS).toFixed(1)),
  simulated_duration_s: Number((report.duration_ms / 1000).toFixed(1)),
  prefix_cache_reused_ratio: r4(report.prefix_cache_reused_ratio),
  passes: result.numPasses,
  engine_steps: result.numEngineSteps,
  coasted_passes: result.numCoastedPasses,
  results_digest: replayResultsDigest(result),
  workers,
  parse_s: Number(((t1 - t0) / 1000).toFixed(3)),
  report_s: Number(((t3 - t2) / 1000).toFixed(3)),
  ...comparison,
  load_avg_1m: Number((loadavg()[0] as number).toFixed(2)),
}));
