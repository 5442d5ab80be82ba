/**
 * bench:pacing — many ranks at speedup 1 under light load: how fast the fleet starts, how much
 * memory it takes, and how precisely ranks wake at their modeled pass deadlines.
 *
 *   node dist/bench/pacing.js [--ranks 256] [--ranks-per-thread auto] [--busy-ranks N] [--seconds 10] [--warmup 2]
 *
 * Light load: one long request (max_tokens 100000, 128-token prompt) on each of the first
 * --busy-ranks ranks (default: every rank), so each busy rank runs ~6 ms decode passes and waits
 * in between.
 *
 * Prints one JSON line. Lateness percentiles come from mockfleet_pass_lateness_seconds
 * (bucket deltas over the measured interval, interpolated like histogram_quantile).
 * serve_cpu_us_per_pass = serve's CPU time (all threads, /proc) over the measured interval ÷ the
 * passes all ranks ran in it (mockfleet_passes_total delta), without the first /metrics scrape's
 * own rendering (see below). wakeups_per_pass_by_thread: voluntary
 * context switches (a thread that slept and was woken: futex waits, timers) per pass, by role, from
 * /proc/<pid>/task/<tid>/status.
 * lateness_over_2ms_ratio: the fraction of those passes in lateness buckets above 2 ms.
 * platform_wait_*: the platform's floor, measured in the same interval by a probe thread in this
 * process that sleeps like a rank thread (timed Atomics.wait of 1–6.5 ms that nobody notifies,
 * bench/lib/wake-probe.ts): how late its waits returned after their timeouts (exact p50/p99 over
 * platform_waits waits, and the fraction more than 2 ms late).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { histogramQuantile } from '../src/protocol/rank-counters.js';
import { cpuByRole, spawnReady, threadCpuMs, threadRoles } from './lib/process.js';
import { startWakeProbe } from './lib/wake-probe.js';

/** Voluntary context switches of each thread of a process, by tid. */
function threadWakeups(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
      if (m !== null) out.set(Number(tid), Number(m[1]));
    } catch {
      // the thread ended between readdir and read
    }
  }
  return out;
}

const { values } = parseArgs({
  options: {
    ranks: { type: 'string', default: '256' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    'max-tokens': { type: 'string', default: '100000' },
    'ranks-per-thread': { type: 'string', default: 'auto' },
    'busy-ranks': { type: 'string' },
  },
});
const ranks = Number(values.ranks);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const maxTokens = Number(values['max-tokens']);
const ranksPerThread = values['ranks-per-thread'];
const busyRanks = values['busy-ranks'] === undefined ? ranks : Number(values['busy-ranks']);

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const t0 = performance.now();
// spawnReady parses the ready line only once it is complete (it is long at thousands of ranks).
const spawned = await spawnReady([cli, 'serve', '--port', '0', '--num-workers', String(ranks), '--speedup-ratio', '1', '--max-waiting', '100000', '--ranks-per-thread', ranksPerThread], 'mockfleet ready', 300_000);
const child = spawned.child;
const ready = spawned.info as { url: string; model: string; pid: number };
// Never leave the fleet running if this process dies (timeout, Ctrl-C).
process.on('exit', () => child.kill('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
const startupS = (performance.now() - t0) / 1000;

const agent = new http.Agent({ keepAlive: true, maxSockets: ranks + 8 });
function post(path: string, body: unknown, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(path, ready.url);
    const req = http.request(u, { method: 'POST', agent, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
function get(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(new URL(path, ready.url), { agent }, (res) => {
      let s = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (s += c));
      res.on('end', () => resolve(s));
    }).on('error', reject);
  });
}

/** Light load: one long request per rank, so every rank runs ~6 ms decode passes and sleeps between. */
const inflight: Array<Promise<number>> = [];
const prompt = Array.from({ length: 128 }, (_, i) => i + 1);
for (let r = 0; r < busyRanks; r++) {
  inflight.push(post('/v1/completions', { model: ready.model, prompt, max_tokens: maxTokens }, { 'x-mockfleet-rank': String(r) }).catch(() => -1));
}

function lateness(text: string): { buckets: number[]; counts: number[] } {
  const byLe = new Map<string, number>();
  for (const m of text.matchAll(/^mockfleet_pass_lateness_seconds_bucket\{[^}]*le="([^"]+)"\} (\S+)$/gm)) {
    byLe.set(m[1] as string, (byLe.get(m[1] as string) ?? 0) + Number(m[2]));
  }
  const les = [...byLe.keys()].filter((k) => k !== '+Inf').map(Number).sort((a, b) => a - b);
  const cum = [...les.map((le) => byLe.get(String(le)) ?? 0), byLe.get('+Inf') ?? 0];
  const counts = cum.map((c, i) => c - (i === 0 ? 0 : (cum[i - 1] as number)));
  return { buckets: les, counts };
}
function passes(text: string): number {
  let n = 0;
  for (const m of text.matchAll(/^mockfleet_passes_total\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
  return n;
}

await new Promise((r) => setTimeout(r, warmup * 1000));
// Passes come from /metrics, whose counters are read as a scrape starts; a scrape takes seconds
// at thousands of ranks and renders on the main thread. So everything is measured between the
// two scrapes' starts, except the main thread and V8's helper threads, whose CPU is taken at its
// rate in the quiet part (after the first scrape ended) so the scrape's own rendering is left out.
const probe = startWakeProbe();
const threadsAtStart = threadCpuMs(ready.pid);
const wakeupsAtStart = threadWakeups(ready.pid);
const beforeAt = performance.now();
const before = await get('/metrics');
const roles = threadRoles(before);
const threadsQuiet = threadCpuMs(ready.pid);
const quietFrom = performance.now();
await new Promise((r) => setTimeout(r, seconds * 1000));
const threadsAtEnd = threadCpuMs(ready.pid);
const wakeupsAtEnd = threadWakeups(ready.pid);
const afterAt = performance.now();
const [after, platform] = await Promise.all([get('/metrics'), probe.stop()]);
const measuredS = (afterAt - beforeAt) / 1000;
const quietS = (afterAt - quietFrom) / 1000;
const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${ready.pid}/status`, 'utf8'))?.[1] ?? 'NaN');
const a = lateness(before);
const b = lateness(after);
const delta = b.counts.map((c, i) => c - (a.counts[i] ?? 0));
const passCount = passes(after) - passes(before);
// Bucket i holds lateness in (buckets[i-1], buckets[i]]; with 0.002 a bound, "above 2 ms" is exact.
if (!b.buckets.includes(0.002)) throw new Error(`mockfleet_pass_lateness_seconds has no 0.002 bucket bound: ${b.buckets.join(',')}`);
let observed = 0;
let over2ms = 0;
for (let i = 0; i < delta.length; i++) {
  observed += delta[i] as number;
  if (i > 0 && (b.buckets[i - 1] as number) >= 0.002) over2ms += delta[i] as number;
}
// Where serve's CPU per pass goes: main (HTTP + output fan-out), publisher, rank threads, and the
// rest (V8 GC helpers, libuv pool).
const cpuMsByRole = cpuByRole(threadsAtStart, threadsAtEnd, roles);
const quietByRole = cpuByRole(threadsQuiet, threadsAtEnd, roles);
for (const k of ['main', 'other']) cpuMsByRole[k] = ((quietByRole[k] as number) * measuredS) / quietS;
let cpuTotalMs = 0;
const perPassByRole: Record<string, number> = {};
for (const [k, ms] of Object.entries(cpuMsByRole)) {
  cpuTotalMs += ms;
  perPassByRole[k] = passCount > 0 ? Number(((ms * 1000) / passCount).toFixed(2)) : 0;
}
const wakeupsByRole = cpuByRole(wakeupsAtStart, wakeupsAtEnd, roles);
for (const k of Object.keys(wakeupsByRole)) wakeupsByRole[k] = passCount > 0 ? Number(((wakeupsByRole[k] as number) / passCount).toFixed(3)) : 0;

child.kill('SIGTERM');
await new Promise((r) => child.on('exit', r));
agent.destroy();
void Promise.allSettled(inflight);

console.log(
  JSON.stringify({
    bench: 'pacing',
    ranks,
    ranks_per_thread: ranksPerThread,
    busy_ranks: busyRanks,
    startup_s: Number(startupS.toFixed(3)),
    rss_mib: Math.round(rssKb / 1024),
    passes_per_s: Math.round(passCount / measuredS),
    serve_cpu_us_per_pass: passCount > 0 ? Number(((cpuTotalMs * 1000) / passCount).toFixed(2)) : null,
    serve_cpu_cores: Number((cpuTotalMs / (measuredS * 1000)).toFixed(3)),
    serve_cpu_us_per_pass_by_thread: perPassByRole,
    wakeups_per_pass_by_thread: wakeupsByRole,
    lateness_p50_ms: Number((histogramQuantile(b.buckets, delta, 0.5) * 1000).toFixed(3)),
    lateness_p90_ms: Number((histogramQuantile(b.buckets, delta, 0.9) * 1000).toFixed(3)),
    lateness_p99_ms: Number((histogramQuantile(b.buckets, delta, 0.99) * 1000).toFixed(3)),
    lateness_over_2ms_ratio: observed > 0 ? Number((over2ms / observed).toFixed(5)) : null,
    platform_wait_late_p50_ms: Number(platform.lateP50Ms.toFixed(3)),
    platform_wait_late_p99_ms: Number(platform.lateP99Ms.toFixed(3)),
    platform_wait_late_over_2ms_ratio: Number(platform.lateOver2msRatio.toFixed(5)),
    platform_waits: platform.waits,
    measured_s: Number(measuredS.toFixed(2)),
    node: process.version,
  }),
);
process.exit(0);
