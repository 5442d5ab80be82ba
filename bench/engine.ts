/**
 * Engine core throughput on the PR #11025 reference workload (engine-spec §14), in virtual time on
 * one thread: 256 requests always in flight (a completed request is replaced at once), ISL/OSL
 * 1024/1024 with random prompt tokens, default engine args with 64-token blocks, KV events drained
 * every pass. Prints one JSON line.
 */
import { loadavg } from 'node:os';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { DEFAULT_ENGINE_ARGS, Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../src/engine/engine.js';
import { AddOutcome } from '../src/engine/types.js';

const CONCURRENCY = 256;
const ISL = 1024;
const OSL = 1024;
const WARMUP_S = 1.5;
const MEASURE_S = Number(process.env.BENCH_SECONDS ?? 4);

const engine = new Engine(normalizeEngineArgs({ ...DEFAULT_ENGINE_ARGS, seed: 7 }), createPolynomialPerfModel());

// Prompts are generated before timing (the load generator's work, not the engine's) and cycled.
// 2048 distinct random prompts: a prompt comes back only after ~4× the requests whose blocks the
// 16384-block cache can hold, so its blocks were evicted long before and prefix hits stay rare.
const NUM_PROMPTS = 2048;
const prompts: Uint32Array[] = [];
let rngState = 0x12345678;
for (let p = 0; p < NUM_PROMPTS; p++) {
  const prompt = new Uint32Array(ISL);
  for (let i = 0; i < ISL; i++) {
    // xorshift32
    rngState ^= rngState << 13;
    rngState ^= rngState >>> 17;
    rngState ^= rngState << 5;
    prompt[i] = (rngState >>> 0) % 150000;
  }
  prompts.push(prompt);
}
let nextId = 0;

function addOne(): void {
  const prompt = prompts[nextId % NUM_PROMPTS] as Uint32Array;
  const outcome = engine.addRequest(nextId, prompt, OSL);
  if (outcome !== AddOutcome.queued) throw new Error(`request ${nextId} was rejected`);
  nextId = (nextId + 1) & 0x3fffffff;
}

for (let i = 0; i < CONCURRENCY; i++) addOne();

let nowMs = 0;
let tokens = 0;
let passes = 0;
let completed = 0;
let preemptions = 0;

function run(seconds: number): void {
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let k = 0; k < 64; k++) {
      const r = engine.step(nowMs);
      nowMs += r.prefillMs + r.decodeMs;
      tokens += r.numTokens;
      passes++;
      preemptions += r.numPreemptions;
      const done = r.numFinished;
      completed += done;
      engine.takeEvents();
      for (let j = 0; j < done; j++) addOne();
    }
  }
}

run(WARMUP_S);
tokens = 0;
passes = 0;
completed = 0;
preemptions = 0;

const query0 = engine.prefixQueryTokensTotal;
const hit0 = engine.prefixHitTokensTotal;
let gcCount = 0;
const obs = new PerformanceObserver((list) => {
  gcCount += list.getEntries().length;
});
obs.observe({ entryTypes: ['gc'] });
const cpu0 = process.cpuUsage();
const t0 = performance.now();
run(MEASURE_S);
const wallS = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const cpuS = (cpu.user + cpu.system) / 1e6;
// GC entries are delivered asynchronously: let the observer drain before reading the count.
await new Promise((resolve) => setImmediate(resolve));
obs.disconnect();

if (preemptions !== 0) throw new Error(`reference workload must not preempt, saw ${preemptions}`);
process.stdout.write(
  `${JSON.stringify({
    bench: 'engine',
    output_tokens_per_s: Math.round(tokens / wallS),
    passes_per_s: Math.round(passes / wallS),
    ns_per_output_token: Number(((wallS * 1e9) / tokens).toFixed(2)),
    gc_count: gcCount,
    requests_completed: completed,
    prefix_hit_rate: Number(((engine.prefixHitTokensTotal - hit0) / (engine.prefixQueryTokensTotal - query0)).toFixed(4)),
    wall_s: Number(wallS.toFixed(3)),
    // CPU time of this thread's process: less sensitive than wall time to other load on the host.
    cpu_ns_per_output_token: Number(((cpuS * 1e9) / tokens).toFixed(2)),
    loadavg_1m: Number((loadavg()[0] as number).toFixed(2)),
    node: process.version,
  })}\n`,
);
