/**
 * bench:fleet — the seed workload (concurrency 256, ISL/OSL 1024/1024, speedup 0) through a fleet
 * frontend (`serve --fleet --num-workers 0`) to 2 `mockfleet worker` processes over a real
 * nats-server, against the same ranks inside one `serve`, in the same run. Prints one JSON line:
 * both req/s, their ratio (target ≥ 0.7 on the 2-core VM), CPU ms per request of the frontend
 * (and of the single serve and the workers), and the 1-minute load average at start and end.
 *
 *   node dist/bench/fleet.js [--duration 15] [--warmup 3] [--concurrency 256]
 */
import { join } from 'node:path';
import { cpus, loadavg } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { runBench, DEFAULT_BENCH_OPTIONS } from '../src/loadgen/bench.js';
import { startNatsServer } from '../test/support/nats-server.js';
import { cpuMs, flag, root, spawnReady, stop } from './lib/process.js';

const durationS = flag('--duration', 15);
const warmupS = flag('--warmup', 3);
const concurrency = flag('--concurrency', 256);
const CLI = join(root, 'dist/src/cli/main.js');
const SHAPE = ['--speedup-ratio', '0', '--block-size', '64'];

interface Run {
  reqPerS: number;
  outputTokensPerS: number;
  failed: number;
  errors: Record<string, string>;
  cpuMsPerReq: number[];
}

async function measure(url: string, pids: number[]): Promise<Run> {
  const cpu0 = pids.map(cpuMs);
  const r = await runBench({ ...DEFAULT_BENCH_OPTIONS, url, concurrency, isl: 1024, osl: 1024, durationS, warmupS, ignoreEos: true, promptFormat: 'token-ids', seed: 1 });
  const all = r.metrics.completed + r.metrics.failed + r.warmupRequests;
  return {
    reqPerS: Number(r.metrics.requestThroughput.toFixed(1)),
    outputTokensPerS: Math.round(r.metrics.outputTokenThroughput),
    failed: r.metrics.failed,
    errors: r.metrics.errorSamples,
    cpuMsPerReq: pids.map((p, i) => Number(((cpuMs(p) - (cpu0[i] as number)) / all).toFixed(3))),
  };
}

const load0 = loadavg()[0] as number;
const nats = await startNatsServer();
const children: ChildProcess[] = [];
try {
  // The same 2 ranks inside one serve.
  const single = await spawnReady([CLI, 'serve', '--port', '0', '--nats', nats.url, '--num-workers', '2', ...SHAPE], 'mockfleet ready', 60_000);
  children.push(single.child);
  const one = await measure(String(single.info['url']), [single.child.pid as number]);
  await stop(single.child);

  // 2 worker processes + a frontend without ranks.
  const fleetArgs = ['--nats', nats.url, '--fleet', 'bench', '--port', '0', ...SHAPE];
  const workers = await Promise.all([0, 1].map(() => spawnReady([CLI, 'worker', ...fleetArgs, '--num-workers', '1'], 'mockfleet ready', 60_000)));
  for (const w of workers) children.push(w.child);
  const front = await spawnReady([CLI, 'serve', ...fleetArgs, '--num-workers', '0'], 'mockfleet ready', 60_000);
  children.push(front.child);
  let frontStderr = '';
  front.child.stderr?.on('data', (s: string) => {
    if (frontStderr.length < 1_000_000) frontStderr += s;
  });
  const frontUrl = String(front.info['url']);
  for (let i = 0; ; i++) {
    const v = (await (await fetch(`${frontUrl}/fleet`)).json()) as { workers: unknown[] };
    if (v.workers.length === 2) break;
    if (i > 200) throw new Error('the frontend did not discover both workers within 10 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const fleet = await measure(frontUrl, [front.child.pid as number, ...workers.map((w) => w.child.pid as number)]);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'fleet',
      concurrency,
      isl: 1024,
      osl: 1024,
      duration_s: durationS,
      warmup_s: warmupS,
      single_serve_req_per_s: one.reqPerS,
      fleet_req_per_s: fleet.reqPerS,
      ratio: Number((fleet.reqPerS / one.reqPerS).toFixed(3)),
      single_serve_cpu_ms_per_req: one.cpuMsPerReq[0],
      frontend_cpu_ms_per_req: fleet.cpuMsPerReq[0],
      worker_cpu_ms_per_req: fleet.cpuMsPerReq.slice(1),
      fleet_output_tokens_per_s: fleet.outputTokensPerS,
      failed: one.failed + fleet.failed,
      ...(one.failed + fleet.failed > 0 ? { error_samples: { ...one.errors, ...fleet.errors } } : {}),
      frontend_log_worker_drops: (frontStderr.match(/stopped responding/g) ?? []).length,
      load_1m_start: Number(load0.toFixed(2)),
      load_1m_end: Number((loadavg()[0] as number).toFixed(2)),
      node: process.version,
      ncpu: cpus().length,
    })}\n`,
  );
} finally {
  for (const c of children) await stop(c);
  await nats.stop();
}
