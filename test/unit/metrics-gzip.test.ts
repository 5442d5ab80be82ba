/**
 * /metrics compression: segments stitched into one gzip member, Accept-Encoding parsing, and the
 * (family, rank group) chunk cache of FleetMetrics over a fake fleet (no threads).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32, gunzipSync } from 'node:zlib';
import { acceptsGzip } from '../../src/metrics/accept-encoding.js';
import { crc32Combine, deflateSegmentSync, gzipMember } from '../../src/metrics/gzip-segments.js';
import { FleetMetrics } from '../../src/metrics/fleet-metrics.js';
import type { MetricsSource } from '../../src/metrics/fleet-metrics.js';
import { Scalar, counterLayout, observe } from '../../src/protocol/rank-counters.js';
import type { CounterLayout } from '../../src/protocol/rank-counters.js';

function fakeFleet(numRanks: number, dp = 1): MetricsSource & { counters: Float64Array[]; layout: CounterLayout } {
  const layout = counterLayout(4096);
  const counters = Array.from({ length: numRanks }, (_, r) => {
    const a = new Float64Array(layout.floatsPerRank);
    a[Scalar.tid] = 100 + r;
    a[Scalar.cpu] = -1;
    return a;
  });
  return {
    numRanks,
    dataParallelSize: dp,
    modelName: 'fake/model',
    counters,
    layout,
    config: { engineArgs: { blockSize: 16, enablePrefixCaching: true, numGpuBlocks: 1024 }, frontendCpus: null, publisherCpus: null },
    ranks: () => counters.map((_, r) => ({ dpRank: r % dp, workerId: BigInt(9000 + Math.floor(r / dp)) })),
    publisherHandle: () => ({ stats: () => ({ published: 5, dropped: 0, bytes: 77, natsConnected: true, zmq: { published: 0, dropped: 0, bytes: 0 } }), tid: 4242 }),
  };
}

const text = (parts: readonly Buffer[]): string => Buffer.concat(parts).toString('utf8');
/**
 * The text without the series that move on their own between scrapes: the process-level ones and
 * the exposition's own cost counters.
 */
const ranksPart = (s: string): string =>
  s
    .slice(0, s.indexOf('# HELP process_'))
    .split('\n')
    .filter((l) => !l.includes('mockfleet_metrics_'))
    .join('\n');
/** Equality of two large texts without printing them whole when they differ. */
function sameText(actual: string, expected: string, what: string): void {
  if (actual === expected) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  assert.fail(`${what}: differs at byte ${i} of ${expected.length}: ${JSON.stringify(actual.slice(i - 80, i + 80))} vs ${JSON.stringify(expected.slice(i - 80, i + 80))}`);
}

test('metrics gzip - CRC-32 of a concatenation combines from the parts', () => {
  const a = Buffer.from('vllm:num_requests_running{engine="0"} 0\n'.repeat(97));
  const b = Buffer.from('x'.repeat(123457));
  assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(Buffer.concat([a, b])));
  assert.equal(crc32Combine(crc32(a), crc32(Buffer.alloc(0)), 0), crc32(a));
  assert.equal(crc32Combine(0, crc32(b), b.length), crc32(b));
});

test('metrics gzip - independently compressed segments make one gzip member of their concatenation', () => {
  const parts = ['# HELP a x\n', 'a{l="1"} 1\n'.repeat(5000), '', 'b 2\n', 'ü 3\n'.repeat(3)].map((s) => Buffer.from(s, 'utf8'));
  const member = Buffer.concat(gzipMember(parts.map(deflateSegmentSync)));
  assert.equal(gunzipSync(member).toString('utf8'), Buffer.concat(parts).toString('utf8'));
  // One member: the trailer closes the only DEFLATE stream (readers that stop after the first
  // member, like curl and browsers, still see everything).
  assert.equal(member.indexOf(Buffer.from([0x1f, 0x8b, 0x08]), 1), -1);
  assert.equal(member.readUInt32LE(member.length - 4), Buffer.concat(parts).length);
});

test('metrics gzip - Accept-Encoding: gzip unless q=0, * counts, absent means identity', () => {
  const cases: Array<[string | undefined, boolean]> = [
    [undefined, false],
    ['', false],
    ['gzip', true],
    ['GZip', true],
    ['x-gzip', true],
    ['deflate, gzip;q=1.0, *;q=0.5', true],
    ['gzip;q=0', false],
    ['gzip; q=0.000', false],
    ['gzip;q=0, *', false],
    ['*', true],
    ['*;q=0', false],
    ['identity', false],
    ['br, deflate', false],
    ['gzip;q=0.001', true],
  ];
  for (const [header, want] of cases) assert.equal(acceptsGzip(header), want, `Accept-Encoding: ${header}`);
  assert.equal(acceptsGzip(['br', 'gzip']), true, 'repeated header lines');
});

test('metrics gzip - the gzip body decodes to exactly the identity text of the same scrape', async () => {
  const src = fakeFleet(300);
  for (let r = 0; r < 300; r += 7) observe(src.counters[r] as Float64Array, 0, src.layout.ttft, r / 100);
  const m = new FleetMetrics(src, { linesPerChunk: 200 });
  const body = await m.body(undefined, false, true);
  const identity = text(body.text());
  sameText(gunzipSync(Buffer.concat(body.gzip())).toString('utf8'), identity, 'gzip vs identity');
  assert.equal(Buffer.byteLength(identity), body.bytes);
  assert.match(identity, /^vllm:time_to_first_token_seconds_bucket\{model_name="fake\/model",engine="0",worker_id="9007",le="\+Inf"\} 1$/m);
  // A later scrape of the unchanged fleet is served from the cache and reads the same.
  const again = await m.body(undefined, false, false);
  assert.equal(m.stats.lastRecompressed, 0);
  sameText(ranksPart(gunzipSync(Buffer.concat(again.gzip())).toString('utf8')), ranksPart(identity), 'cached scrape');
  // ... and so does a cold render of the same counters (the cache is not changing the text).
  const cold = new FleetMetrics(src, { linesPerChunk: 100_000 });
  sameText(ranksPart(text(await cold.render())), ranksPart(identity), 'cold render');
});

test('metrics gzip - only chunks whose ranks changed are rendered and compressed again', async () => {
  const src = fakeFleet(1024);
  const m = new FleetMetrics(src, { linesPerChunk: 1600 });
  await m.body();
  const chunks = m.stats.chunks;
  assert.equal(m.stats.lastRecompressed, chunks, 'the first scrape renders every chunk');
  await m.body();
  assert.equal(m.stats.lastRecompressed, 0, 'an idle fleet renders nothing');
  // One histogram observation on rank 700: only that family's chunk holding rank 700.
  observe(src.counters[700] as Float64Array, 0, src.layout.itl, 0.03);
  const body = await m.body(undefined, false, true);
  assert.equal(m.stats.lastRecompressed, 1);
  assert.match(text(body.text()), /^vllm:inter_token_latency_seconds_count\{model_name="fake\/model",engine="0",worker_id="9700"\} 1$/m);
  // A gauge on ranks 0 and 1 (same chunk of the gauge family) and a counter on rank 1023.
  (src.counters[0] as Float64Array)[Scalar.running] = 2;
  (src.counters[1] as Float64Array)[Scalar.running] = 1;
  (src.counters[1023] as Float64Array)[Scalar.passes] = 9;
  await m.body();
  assert.equal(m.stats.lastRecompressed, 2);
  // The OpenMetrics view shares the cache: only its headers differ.
  const om = text((await m.body(undefined, true, true)).text());
  assert.equal(m.stats.lastRecompressed, 0);
  assert.match(om, /^# TYPE vllm:prompt_tokens counter$/m);
  assert.match(om, /^# EOF\n$/m);
  assert.ok(m.stats.cacheBytes > 0 && m.stats.cacheBytes < 2_000_000, `cache ${m.stats.cacheBytes} bytes`);
});

test('metrics gzip - a worker view has its own ranks and no worker_id', async () => {
  const src = fakeFleet(8, 4);
  const m = new FleetMetrics(src);
  const s = text(await m.render(1));
  assert.match(s, /^vllm:num_requests_running\{model_name="fake\/model",engine="3"\} 0$/m);
  assert.doesNotMatch(s, /worker_id=/);
  assert.equal([...s.matchAll(/^vllm:num_requests_running\{/gm)].length, 4);
  assert.throws(() => new FleetMetrics(src, { linesPerChunk: 0 }), /linesPerChunk/);
});
