/**
 * HTTP serving benchmark: mockfleet's load generator at the reference workload (concurrency 256,
 * ISL/OSL 1024/1024, token-id prompts, streamed) against (a) a server — --url / MOCKFLEET_URL, or a
 * `mockfleet serve --speedup-ratio 0 --block-size 64 --port 0` spawned here — and (b) the trivial
 * SSE server (bench/trivial-sse-server.ts, separate process) streaming the same number of chunks.
 * The ratio shows how close serve gets to the node:http ceiling on this host.
 *
 *   node dist/bench/http.js [--url URL] [--workers 1] [--duration 10] [--warmup 2] [--concurrency 256] [--isl 1024] [--osl 1024]
 *
 * Prints one JSON line: {"bench":"http","req_per_s",..,"output_tokens_per_s",..,"serve_cpu_ms_per_req",..,
 * "trivial_req_per_s",..,"ratio_to_trivial",..,"errors",..} plus the load generator's own CPU ms per
 * request (client_cpu_ms_per_req, trivial side) and the trivial server's. serve_cpu_ms_per_req is
 * null for an external --url (its process is not ours to measure).
 */
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench, DEFAULT_BENCH_OPTIONS } from '../src/loadgen/bench.js';
import { cpuMs, flag, spawnReady, stop } from './lib/process.js';
import type { BenchResult } from '../src/loadgen/bench.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

function stringFlag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

async function load(url: string, concurrency: number, isl: number, osl: number, durationS: number, warmupS: number): Promise<BenchResult> {
  return runBench({ ...DEFAULT_BENCH_OPTIONS, url, concurrency, isl, osl, durationS, warmupS, ignoreEos: true, promptFormat: 'token-ids', seed: 1 });
}

function errorCount(r: BenchResult): number {
  return r.metrics.failed;
}

async function main(): Promise<void> {
  const durationS = flag('--duration', 10);
  const warmupS = flag('--warmup', 2);
  const concurrency = flag('--concurrency', 256);
  const isl = flag('--isl', 1024);
  const osl = flag('--osl', 1024);
  const external = stringFlag('--url') ?? process.env['MOCKFLEET_URL'];
  const workers = flag('--workers', 1);

  let serve: ChildProcess | null = null;
  let serveUrl: string;
  if (external !== undefined && external !== '') serveUrl = external;
  else {
    const s = await spawnReady([join(root, 'dist/src/cli/main.js'), 'serve', '--speedup-ratio', '0', '--block-size', '64', '--port', '0', '--num-workers', String(workers)], 'mockfleet ready', 60_000);
    serve = s.child;
    serveUrl = String(s.info['url']);
  }
  let serveResult: BenchResult;
  let serveCpu: number | null = null;
  try {
    const before = serve?.pid !== undefined ? cpuMs(serve.pid) : Number.NaN;
    serveResult = await load(serveUrl, concurrency, isl, osl, durationS, warmupS);
    if (serve?.pid !== undefined) {
      const all = serveResult.metrics.completed + serveResult.metrics.failed + serveResult.warmupRequests;
      serveCpu = all > 0 ? (cpuMs(serve.pid) - before) / all : null;
    }
  } finally {
    if (serve !== null) await stop(serve);
  }

  const t = await spawnReady([join(here, 'trivial-sse-server.js'), '--port', '0', '--chunks', String(osl)], 'trivial-sse ready', 30_000);
  let trivial: BenchResult;
  let clientCpu: number | null = null;
  let trivialCpu: number | null = null;
  try {
    const c0 = process.cpuUsage();
    const s0 = t.child.pid !== undefined ? cpuMs(t.child.pid) : Number.NaN;
    trivial = await load(String(t.info['url']), concurrency, isl, osl, durationS, warmupS);
    const c = process.cpuUsage(c0);
    const all = trivial.metrics.completed + trivial.metrics.failed + trivial.warmupRequests;
    if (all > 0) {
      clientCpu = (c.user + c.system) / 1000 / all;
      if (t.child.pid !== undefined) trivialCpu = (cpuMs(t.child.pid) - s0) / all;
    }
  } finally {
    await stop(t.child);
  }

  const rps = serveResult.metrics.requestThroughput;
  const trps = trivial.metrics.requestThroughput;
  let sha: string | null = null;
  try {
    sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch (err) {
    process.stderr.write(`bench/http: git sha unavailable (${(err as Error).message})\n`);
  }
  const round = (v: number | null, d: number): number | null => (v === null || !Number.isFinite(v) ? null : Number(v.toFixed(d)));
  process.stdout.write(JSON.stringify({
    bench: 'http',
    target: external !== undefined && external !== '' ? serveUrl : `spawned serve --speedup-ratio 0 --block-size 64 --num-workers ${workers}`,
    concurrency, isl, osl, duration_s: durationS, warmup_s: warmupS,
    req_per_s: round(rps, 1),
    output_tokens_per_s: round(serveResult.metrics.outputTokenThroughput, 0),
    ttft_p50_ms: round(serveResult.metrics.summaries.time_to_first_token.p50, 2),
    serve_cpu_ms_per_req: round(serveCpu, 3),
    trivial_req_per_s: round(trps, 1),
    ratio_to_trivial: round(trps > 0 ? rps / trps : null, 3),
    client_cpu_ms_per_req: round(clientCpu, 3),
    trivial_server_cpu_ms_per_req: round(trivialCpu, 3),
    errors: errorCount(serveResult),
    trivial_errors: errorCount(trivial),
    node: process.version, cpu: cpus()[0]?.model ?? null, ncpu: cpus().length, git_sha: sha,
  }) + '\n');
}

await main();
