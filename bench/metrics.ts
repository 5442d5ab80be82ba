/**
 * bench:metrics — the /metrics chunk cache in-process, without rank threads: a fake fleet of
 * --ranks ranks (counters in plain Float64Arrays, every histogram already observed), scraped by
 * FleetMetrics for each --lines-per-chunk value:
 *
 *   cold_ms          first scrape (renders and compresses everything)
 *   idle_ms          a scrape when nothing moved (median of 5)
 *   busy_ms          256 ranks observed a pass since the last scrape (ranks 0..255: one thread's
 *                    worth, like bench:pacing --busy-ranks), median of 5
 *   spread_ms        the same, but every 16th rank busy (the worst case for chunking)
 *   *_chunks         chunks recompressed in that scrape
 *   gzip_mib         the gzip body; text_mib its text; cache_mib what the cache keeps
 *   identity_ms      the text of an idle scrape, inflated from the cache
 *
 *   node dist/bench/metrics.js [--ranks 4096] [--lines-per-chunk 400,800,1600,3200,6400]
 *
 * Prints one JSON line. Times are wall time of this single-threaded process.
 */
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { FleetMetrics } from '../src/metrics/fleet-metrics.js';
import type { MetricsSource } from '../src/metrics/fleet-metrics.js';
import { Scalar, counterLayout, observe } from '../src/protocol/rank-counters.js';

const { values } = parseArgs({
  options: {
    ranks: { type: 'string', default: '4096' },
    'lines-per-chunk': { type: 'string', default: '400,800,1600,3200,6400' },
    'max-model-len': { type: 'string', default: '16384' },
  },
});
const numRanks = Number(values.ranks);
const sizes = values['lines-per-chunk'].split(',').map(Number);
if (!(Number.isInteger(numRanks) && numRanks > 0) || sizes.some((n) => !(Number.isInteger(n) && n > 0))) {
  throw new RangeError('--ranks and --lines-per-chunk must be positive integers');
}
const layout = counterLayout(Number(values['max-model-len']));

function fleet(): MetricsSource {
  const counters: Float64Array[] = [];
  for (let r = 0; r < numRanks; r++) {
    const a = new Float64Array(layout.floatsPerRank);
    a[Scalar.tid] = 1000 + r;
    a[Scalar.cpu] = -1;
    for (let k = 0; k < 20; k++) pass(a, r * 31 + k);
    counters.push(a);
  }
  return {
    numRanks,
    dataParallelSize: 1,
    modelName: 'mockfleet/mock-llm',
    counters,
    layout,
    config: { engineArgs: { blockSize: 64, enablePrefixCaching: true, numGpuBlocks: 16384 }, frontendCpus: null, publisherCpus: null },
    ranks: () => counters.map((_, r) => ({ dpRank: 0, workerId: BigInt(r) * 7919n + 12345678901234n })),
    publisherHandle: () => null,
  };
}

/** What one decode pass of a busy rank changes, plus a finished request now and then. */
function pass(a: Float64Array, seed: number): void {
  const x = ((seed * 2654435761) % 1000) / 1000;
  a[Scalar.passes] = (a[Scalar.passes] as number) + 1;
  a[Scalar.generationTokens] = (a[Scalar.generationTokens] as number) + 1;
  a[Scalar.running] = 1;
  a[Scalar.kvUsage] = x / 10;
  observe(a, 0, layout.itl, 0.005 + x / 50);
  observe(a, 0, layout.lateness, x / 1000);
  observe(a, 0, layout.iterationTokens, 1);
  if (seed % 7 === 0) {
    for (const h of [layout.ttft, layout.e2e, layout.queue, layout.prefill, layout.decode, layout.inference, layout.tpot]) observe(a, 0, h, x * 2);
    for (const h of [layout.requestPromptTokens, layout.requestGenerationTokens, layout.requestMaxTokens, layout.requestMaxNumGenerationTokens, layout.requestPrefillKvComputed]) {
      observe(a, 0, h, 100 + x * 1000);
    }
    observe(a, 0, layout.requestParamsN, 1);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)] as number;
}

async function timed(m: FleetMetrics): Promise<{ ms: number; gzip: Buffer[] }> {
  const t0 = performance.now();
  const body = await m.body(undefined, false, false);
  const gzip = body.gzip();
  return { ms: performance.now() - t0, gzip };
}

const results: Array<Record<string, number>> = [];
let seed = 1;
for (const per of sizes) {
  const src = fleet();
  const m = new FleetMetrics(src, { linesPerChunk: per });
  const cold = await timed(m);
  const idle: number[] = [];
  for (let i = 0; i < 5; i++) idle.push((await timed(m)).ms);
  const gzipBytes = cold.gzip.reduce((n, b) => n + b.length, 0);
  const textBytes = gunzipSync(Buffer.concat(cold.gzip)).length;
  const scenario = async (busy: readonly number[]): Promise<{ ms: number; chunks: number }> => {
    const ms: number[] = [];
    let chunks = 0;
    for (let i = 0; i < 5; i++) {
      for (const r of busy) pass(src.counters[r] as Float64Array, seed++);
      ms.push((await timed(m)).ms);
      chunks = m.stats.lastRecompressed;
    }
    return { ms: median(ms), chunks };
  };
  const busy = await scenario(Array.from({ length: 256 }, (_, i) => i));
  const spread = await scenario(Array.from({ length: 256 }, (_, i) => i * Math.max(1, Math.floor(numRanks / 256))));
  await timed(m);
  const t0 = performance.now();
  await m.render(undefined, false);
  const identityMs = performance.now() - t0;
  results.push({
    lines_per_chunk: per,
    chunks: m.stats.chunks,
    cold_ms: Math.round(cold.ms),
    idle_ms: Number(median(idle).toFixed(1)),
    busy_ms: Number(busy.ms.toFixed(1)),
    busy_chunks: busy.chunks,
    spread_ms: Number(spread.ms.toFixed(1)),
    spread_chunks: spread.chunks,
    gzip_mib: Number((gzipBytes / 1048576).toFixed(2)),
    text_mib: Number((textBytes / 1048576).toFixed(1)),
    cache_mib: Number((m.stats.cacheBytes / 1048576).toFixed(2)),
    identity_ms: Math.round(identityMs),
  });
}
console.log(JSON.stringify({ bench: 'metrics', ranks: numRanks, results, node: process.version }));
