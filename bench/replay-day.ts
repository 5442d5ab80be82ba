/**
 * A day of traffic: `trace synth --like conversation --duration 24h --rate-scale 4` (≈ 1.15 M
 * requests, generated here into a temporary file and deleted afterwards), then an offline replay on
 * 64 workers with the kv router. Prints one JSON line: synth_s, parse_s, wall_s (replay loop),
 * total_s, simulated_requests_per_wall_s, peak_rss_mib (whole process), load_avg_1m.
 * Usage: node dist/bench/replay-day.js [DURATION=24h] [RATE_SCALE=4] [NUM_WORKERS=64]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readMooncakeTrace } from '../src/trace/mooncake.js';
import { synthesizeTraceToFile } from '../src/trace/synth.js';
import { runOfflineReplay } from '../src/replay/offline.js';
import { replayResultsDigest } from '../src/replay/digest.js';
import { buildReplayReport } from '../src/replay/report.js';
import { parseDurationMs } from '../src/cli/commands/trace.js';

const duration = process.argv[2] ?? '24h';
const rateScale = Number(process.argv[3] ?? 4);
const workers = Number(process.argv[4] ?? 64);
const source = fileURLToPath(new URL('../../data/mooncake/conversation_trace.jsonl', import.meta.url));

const dir = await mkdtemp(join(tmpdir(), 'mockfleet-replay-day-'));
try {
  const file = join(dir, 'day.jsonl');
  const tStart = performance.now();
  const synth = await synthesizeTraceToFile(await readMooncakeTrace(source), {
    durationMs: parseDurationMs('duration', duration), rateScale, prefixLenMultiplier: 1, promptLenMultiplier: 1, seed: 0, traceBlockSize: 512,
  }, file);
  const t1 = performance.now();
  const reqs = await readMooncakeTrace(file);
  const t2 = performance.now();
  const interactive = process.stderr.isTTY;
  const cpu0 = process.cpuUsage();
  const result = runOfflineReplay(reqs, {
    numWorkers: workers, dataParallelSize: 1, router: 'kv', traceBlockSize: 512, arrivalSpeedupRatio: 1,
    speedupRatio: 1, decodeSpeedupRatio: 1, engineArgs: {}, seed: 0,
    ...(interactive ? { onProgress: (ms: number, n: number, total: number) => process.stderr.write(`\r${n}/${total} arrived, simulated ${(ms / 1000).toFixed(0)} s `) } : {}),
  });
  const cpu = process.cpuUsage(cpu0);
  if (interactive) process.stderr.write('\r\x1b[2K');
  const report = buildReplayReport(result);
  const tEnd = performance.now();
  const wallS = result.wallTimeMs / 1000;
  console.log(JSON.stringify({
    bench: 'replay-day',
    duration,
    rate_scale: rateScale,
    workers,
    requests: report.num_requests,
    completed_requests: report.completed_requests,
    trace_mib: Number((synth.bytes / 1048576).toFixed(1)),
    synth_s: Number(((t1 - tStart) / 1000).toFixed(2)),
    parse_s: Number(((t2 - t1) / 1000).toFixed(2)),
    wall_s: Number(wallS.toFixed(2)),
    cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
    total_s: Number(((tEnd - tStart) / 1000).toFixed(2)),
    simulated_requests_per_wall_s: Number((report.num_requests / wallS).toFixed(1)),
    simulated_duration_s: Number((report.duration_ms / 1000).toFixed(1)),
    passes: result.numPasses,
    engine_steps: result.numEngineSteps,
    coasted_passes: result.numCoastedPasses,
    results_digest: replayResultsDigest(result),
    prefix_cache_reused_ratio: report.prefix_cache_reused_ratio === null ? null : Number(report.prefix_cache_reused_ratio.toFixed(4)),
    ttft_p50_ms: report.ttft_ms.median,
    ttft_p90_ms: report.ttft_ms.p90,
    peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024),
    load_avg_1m: Number((loadavg()[0] as number).toFixed(2)),
  }));
} finally {
  await rm(dir, { recursive: true, force: true });
}
