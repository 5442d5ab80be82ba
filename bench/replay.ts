/**
 * Offline replay benchmark: the whole conversation trace (12,031 requests) on 16 workers with the
 * kv router, default engine args, virtual time. Prints one JSON line. wall_s covers the replay
 * loop (engines, router, KV events); trace parsing and report building are reported separately.
 * Usage: node dist/bench/replay.js [TRACE] [NUM_WORKERS]
 */
import { fileURLToPath } from 'node:url';
import { readMooncakeTrace } from '../src/trace/mooncake.js';
import { runOfflineReplay } from '../src/replay/offline.js';
import { buildReplayReport } from '../src/replay/report.js';

const trace = process.argv[2] ?? fileURLToPath(new URL('../../data/mooncake/conversation_trace.jsonl', import.meta.url));
const workers = Number(process.argv[3] ?? 16);

const t0 = performance.now();
const reqs = await readMooncakeTrace(trace);
const t1 = performance.now();
const cpu0 = process.cpuUsage();
const result = runOfflineReplay(reqs, {
  numWorkers: workers,
  dataParallelSize: 1,
  router: 'kv',
  traceBlockSize: 512,
  arrivalSpeedupRatio: 1,
  speedupRatio: 1,
  decodeSpeedupRatio: 1,
  engineArgs: {},
  seed: 0,
});
const cpu = process.cpuUsage(cpu0);
const t2 = performance.now();
const report = buildReplayReport(result);
const t3 = performance.now();
const wallS = result.wallTimeMs / 1000;
console.log(JSON.stringify({
  bench: 'replay',
  wall_s: Number(wallS.toFixed(3)),
  cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)),
  requests: report.num_requests,
  completed_requests: report.completed_requests,
  simulated_requests_per_wall_s: Number((report.num_requests / wallS).toFixed(1)),
  simulated_duration_s: Number((report.duration_ms / 1000).toFixed(1)),
  prefix_cache_reused_ratio: Number((report.prefix_cache_reused_ratio ?? Number.NaN).toFixed(4)),
  passes: result.numPasses,
  workers,
  parse_s: Number(((t1 - t0) / 1000).toFixed(3)),
  report_s: Number(((t3 - t2) / 1000).toFixed(3)),
}));
