/**
 * bench:seed — the reference workload end to end (engine-spec §14): a real nats-server,
 * `mockfleet serve --nats URL --speedup-ratio 0 --block-size 64` and mockfleet's load generator at
 * concurrency 256, ISL/OSL 1024/1024 with a warm-up. Prints one JSON line with req/s, output
 * tokens/s and the serve process's CPU ms per request.
 *
 *   node dist/bench/seed.js [--workers 1] [--duration 20] [--warmup 5]
 */
import { join } from 'node:path';
import { cpus } from 'node:os';
import { runBench, DEFAULT_BENCH_OPTIONS } from '../src/loadgen/bench.js';
import { startNatsServer } from '../test/support/nats-server.js';
import { cpuMs, flag, root, spawnReady, stop } from './lib/process.js';

const workers = flag('--workers', 1);
const durationS = flag('--duration', 20);
const warmupS = flag('--warmup', 5);
const concurrency = flag('--concurrency', 256);

const nats = await startNatsServer();
const serve = await spawnReady(
  [join(root, 'dist/src/cli/main.js'), 'serve', '--port', '0', '--nats', nats.url, '--speedup-ratio', '0', '--block-size', '64', '--num-workers', String(workers)],
  'mockfleet ready',
  60_000,
);
const pid = serve.child.pid as number;
const url = String(serve.info['url']);
try {
  const cpu0 = cpuMs(pid);
  const r = await runBench({ ...DEFAULT_BENCH_OPTIONS, url, concurrency, isl: 1024, osl: 1024, durationS, warmupS, ignoreEos: true, promptFormat: 'token-ids', seed: 1 });
  const all = r.metrics.completed + r.metrics.failed + r.warmupRequests;
  const cpuPerReq = all > 0 ? (cpuMs(pid) - cpu0) / all : Number.NaN;
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const pick = (name: string): number => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? 'NaN');
  process.stdout.write(
    `${JSON.stringify({
      bench: 'seed',
      workers,
      concurrency,
      isl: 1024,
      osl: 1024,
      duration_s: durationS,
      warmup_s: warmupS,
      req_per_s: Number(r.metrics.requestThroughput.toFixed(1)),
      output_tokens_per_s: Math.round(r.metrics.outputTokenThroughput),
      serve_cpu_ms_per_req: Number(cpuPerReq.toFixed(3)),
      failed: r.metrics.failed,
      nats_published: pick('mockfleet_publisher_published_total'),
      nats_dropped: pick('mockfleet_publisher_dropped_total'),
      node: process.version,
      ncpu: cpus().length,
    })}\n`,
  );
} finally {
  await stop(serve.child);
  await nats.stop();
}
