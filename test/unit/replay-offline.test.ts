import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeBlockHashes, computeSequenceHashes } from '../../src/engine/engine.js';
import { runOfflineReplay, RequestStatus } from '../../src/replay/offline.js';
import { replayResultsDigest } from '../../src/replay/digest.js';
import type { OfflineReplayOptions } from '../../src/replay/offline.js';
import { buildReplayReport, collectSamples, renderReplayReport } from '../../src/replay/report.js';
import { TraceHashes, groupBitsFor, groupHashes } from '../../src/replay/trace-hashes.js';
import { parseMooncakeTrace, synthesizePromptTokens, synthesizePromptTokensInto } from '../../src/trace/mooncake.js';
import type { TraceRequest } from '../../src/trace/mooncake.js';
import { InvalidConfigError } from '../../src/util/errors.js';

function tr(timestampMs: number, hashIds: number[], inputLength: number, outputLength: number, sessionId: string | null = null, delayMs: number | null = null): TraceRequest {
  return { timestampMs, inputLength, outputLength, hashIds: Uint32Array.from(hashIds), sessionId, delayMs, line: 0 };
}

/** 100 blocks of 4 tokens: decode p = activeBlocks / 100. */
const TINY: OfflineReplayOptions = {
  numWorkers: 1,
  dataParallelSize: 1,
  router: 'round_robin',
  traceBlockSize: 4,
  arrivalSpeedupRatio: 1,
  speedupRatio: 1,
  decodeSpeedupRatio: 1,
  engineArgs: { numGpuBlocks: 100, blockSize: 4, maxNumSeqs: 8, maxNumBatchedTokens: 64 },
  seed: 0,
};

// Polynomial perf model (engine-spec §7.1), written out by hand.
const prefill = (t: number): number => 4.209989e-7 * t * t + 1.518344e-2 * t + 16.50142;
const decode = (activeBlocks: number): number => {
  const p = activeBlocks / 100;
  return Math.max(1, -25.74 * p * p + 54.01 * p + 5.74);
};

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: got ${actual}, want ${expected}`);
}

test('replay-offline - one request: TTFT and e2e follow the polynomial model in virtual ms', () => {
  const r = runOfflineReplay([tr(0, [1, 2], 6, 3)], TINY);
  // Pass 1: prefill 6 new tokens + decode with 2 active blocks; passes 2, 3: decode with 2 blocks.
  const ttft = prefill(6) + decode(2);
  close(r.firstTokenMs[0]!, ttft, 'first token');
  close(r.lastTokenMs[0]!, ttft + 2 * decode(2), 'last token');
  assert.equal(r.status[0], RequestStatus.completed);
  const rep = buildReplayReport(r);
  close(rep.ttft_ms.mean!, ttft, 'report TTFT');
  close(rep.e2e_latency_ms.mean!, ttft + 2 * decode(2), 'report e2e');
  close(rep.tpot_ms.mean!, decode(2), 'TPOT');
  close(rep.itl_ms.max!, decode(2), 'ITL');
  close(rep.duration_ms, ttft + 2 * decode(2), 'duration');
  assert.equal(rep.total_output_tokens, 3);
});

test('replay-offline - a request arriving mid-pass waits for the next pass; a later one reuses the cached prefix', () => {
  const reqs = [
    tr(0, [1, 2], 6, 3), // A: tokens 1111 22
    tr(10, [5], 4, 1), // C: arrives during A's first pass
    tr(100, [1, 3], 8, 2), // B: after everything finished; block 1111 is still cached
  ];
  const r = runOfflineReplay(reqs, TINY);
  const a1 = prefill(6) + decode(2);
  // Pass 2 starts at a1: A decodes, C prefills 4 tokens; 3 active blocks (A: 2, C: 1).
  const pass2End = a1 + prefill(4) + decode(3);
  // Pass 3: A alone again (C finished and released its block).
  const a3 = pass2End + decode(2);
  close(r.firstTokenMs[0]!, a1, 'A first token');
  close(r.secondTokenMs[0]!, pass2End, 'A second token');
  close(r.lastTokenMs[0]!, a3, 'A last token');
  close(r.firstTokenMs[1]! - r.arrivalMs[1]!, pass2End - 10, 'C TTFT');
  // B: 4 of 8 prompt tokens hit the cache, so only 4 are prefilled; its second token needs a third block.
  assert.equal(r.reusedTokens[2], 4);
  close(r.firstTokenMs[2]! - 100, prefill(4) + decode(2), 'B TTFT');
  close(r.lastTokenMs[2]! - 100, prefill(4) + decode(2) + decode(3), 'B e2e');
  const rep = buildReplayReport(r);
  assert.equal(rep.completed_requests, 3);
  assert.equal(rep.total_input_tokens, 18);
  assert.equal(rep.total_reused_input_tokens, 4);
  close(rep.prefix_cache_reused_ratio!, 4 / 18, 'reuse ratio');
  close(rep.itl_ms.max!, pass2End - a1, 'largest ITL');
  assert.ok(renderReplayReport(rep).includes('Time to first token (ms)'));
});

test('replay-offline - speedup ratios scale pass times and the arrival ratio scales arrivals', () => {
  const base = runOfflineReplay([tr(1000, [1, 2], 6, 3)], TINY);
  const e2e = prefill(6) + 3 * decode(2);
  // Arrivals are normalized to the earliest timestamp.
  close(base.arrivalMs[0]!, 0, 'normalized arrival');
  close(base.lastTokenMs[0]!, e2e, 'e2e');
  const fast = runOfflineReplay([tr(1000, [1, 2], 6, 3)], { ...TINY, speedupRatio: 2, decodeSpeedupRatio: 4 });
  close(fast.lastTokenMs[0]!, prefill(6) / 2 + (3 * decode(2)) / 8, 'scaled e2e');
  const spaced = runOfflineReplay([tr(0, [1], 4, 1), tr(1000, [2], 4, 1)], { ...TINY, arrivalSpeedupRatio: 4 });
  close(spaced.arrivalMs[1]!, 250, 'scaled arrival');
});

test('replay-offline - a later session turn arrives its delay after the previous turn ends', () => {
  const reqs = parseMooncakeTrace(
    [
      '{"timestamp": 0, "input_length": 6, "output_length": 3, "hash_ids": [1, 2], "session_id": "s"}',
      '{"input_length": 8, "output_length": 1, "hash_ids": [1, 2], "session_id": "s", "delay": 50}',
    ].join('\n'),
    'mem',
  );
  const r = runOfflineReplay(reqs, TINY);
  close(r.arrivalMs[1]!, r.lastTokenMs[0]! + 50, 'second turn arrival');
  assert.equal(r.status[1], RequestStatus.completed);
});

test('replay-offline - the kv router keeps a shared prefix on one rank and gets more prefix hits than round robin', () => {
  const reqs = Array.from({ length: 8 }, (_, i) => tr(i * 1000, [7, 8, 9, 100 + i], 16, 2));
  const opts = { ...TINY, numWorkers: 2, dataParallelSize: 2 };
  const kv = runOfflineReplay(reqs, { ...opts, router: 'kv' });
  const rr = runOfflineReplay(reqs, { ...opts, router: 'round_robin' });
  assert.deepEqual(Array.from(kv.rank), [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(rr.rank), [0, 1, 2, 3, 0, 1, 2, 3]);
  assert.equal(buildReplayReport(kv).total_reused_input_tokens, 7 * 12);
  assert.equal(buildReplayReport(rr).total_reused_input_tokens, 4 * 12);
});

/** Reference identities: the group hashes chained without a trie. */
function referenceHashes(req: TraceRequest, tbs: number, bs: number, hi: Uint32Array, lo: Uint32Array): number {
  const nb = Math.floor(Math.min(req.inputLength, req.hashIds.length * tbs) / bs);
  groupHashes(req.hashIds, nb, tbs / bs, groupBitsFor(tbs / bs), bs, hi, lo);
  return nb;
}

test('replay-offline - router hashes: group hashes of the hash ids when aligned, the tokens\' sequence hashes when not', () => {
  const hashes = new TraceHashes(512, 64);
  assert.equal(hashes.groupBits, 3, '8 engine blocks per trace block: 3 index bits');
  const outA = { hi: new Uint32Array(64), lo: new Uint32Array(64) };
  const outB = { hi: new Uint32Array(64), lo: new Uint32Array(64) };
  const reqs = [tr(0, [0, 1, 2], 1500, 1), tr(0, [0, 1, 3], 1536, 1), tr(0, [0, 1, 2, 4], 1600, 1), tr(0, [9], 100, 1), tr(0, [7, 8, 5, 6, 2], 2560, 1)];
  for (const req of reqs) {
    const n = referenceHashes(req, 512, 64, outA.hi, outA.lo);
    const p = Uint32Array.from({ length: Math.min(req.inputLength, req.hashIds.length * 512) }, (_, i) => req.hashIds[Math.floor(i / 512)]!);
    assert.equal(hashes.hashes(req, p, outB.hi, outB.lo), n);
    assert.deepEqual(outB.hi.subarray(0, n), outA.hi.subarray(0, n));
    assert.deepEqual(outB.lo.subarray(0, n), outA.lo.subarray(0, n));
  }
  // Shared leading ids give shared leading hashes; the 8 blocks of one trace block are one group.
  referenceHashes(reqs[0]!, 512, 64, outA.hi, outA.lo);
  referenceHashes(reqs[1]!, 512, 64, outB.hi, outB.lo);
  assert.deepEqual(outA.hi.subarray(0, 16), outB.hi.subarray(0, 16));
  assert.notEqual(outA.lo[16], outB.lo[16]);
  assert.deepEqual(Array.from(outA.lo.subarray(0, 8), (l) => l & 7), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(Array.from(outA.lo.subarray(0, 8), (l) => l >>> 3), Array.from({ length: 8 }, () => outA.lo[0]! >>> 3));
  // Unaligned block sizes take the direct path: the synthesized tokens' sequence hashes.
  const odd = new TraceHashes(10, 4);
  assert.equal(odd.groupBits, 0);
  assert.equal(new TraceHashes(512, 512).groupBits, 0, 'one engine block per trace block: no groups');
  const req = tr(0, [3, 4, 5], 27, 1);
  const prompt = Uint32Array.from({ length: 27 }, (_, i) => req.hashIds[Math.floor(i / 10)]!);
  const n = odd.hashes(req, prompt, outB.hi, outB.lo);
  assert.equal(n, computeSequenceHashes(prompt, 27, 4, outA.hi, outA.lo));
  assert.deepEqual(outB.hi.subarray(0, n), outA.hi.subarray(0, n));
  assert.throws(() => hashes.hashes(tr(0, [1, 2, 3], 1536, 1), new Uint32Array(1536), new Uint32Array(4), new Uint32Array(4)), RangeError);
});

test('replay-offline - two blocks share a hash exactly when their token prefixes are equal; a trace block is one group', () => {
  // 200 random prompts over a small id alphabet (many shared prefixes, repeated ids, partial last
  // blocks), 16 engine blocks of 32 tokens per trace block plus a 40-block group split (per 40).
  for (const [tbs, bs] of [[512, 32], [320, 8], [384, 64]] as const) {
    const hashes = new TraceHashes(tbs, bs);
    const per = tbs / bs;
    const bits = hashes.groupBits;
    assert.equal(bits, groupBitsFor(per));
    const byHash = new Map<string, string>();
    let seed = 7;
    const next = (k: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % k;
    };
    const hi = new Uint32Array(256), lo = new Uint32Array(256);
    for (let r = 0; r < 200; r++) {
      const ids = Array.from({ length: 1 + next(4) }, () => next(3));
      const len = Math.max(bs, (ids.length - 1) * tbs + 1 + next(tbs));
      const req = tr(0, ids, len, 1);
      const prompt = Uint32Array.from({ length: len }, (_, i) => ids[Math.floor(i / tbs)]!);
      const n = hashes.hashes(req, prompt, hi, lo);
      assert.equal(n, Math.floor(len / bs));
      for (let b = 0; b < n; b++) {
        const key = `${hi[b]}:${lo[b]}`;
        const tokens = Array.from(prompt.subarray(0, (b + 1) * bs)).join(',');
        const seen = byHash.get(key);
        if (seen === undefined) byHash.set(key, tokens);
        else assert.equal(seen, tokens, `hash ${key} of block ${b} names two different prefixes`);
        // The blocks of one trace block differ only in the low `bits` bits of the low half (per ≤ 32).
        if (per <= 32 && b % per !== 0) {
          assert.equal(hi[b], hi[b - 1]);
          assert.equal(lo[b]! >>> bits, lo[b - 1]! >>> bits);
          assert.equal(lo[b]! & ((1 << bits) - 1), b % per);
        }
      }
    }
    // Distinct prefixes got distinct hashes (the map would have failed above otherwise), and
    // equal prefixes met again: the alphabet is small enough that many repeat.
    assert.ok(byHash.size > 50, `${byHash.size} distinct blocks`);
  }
});

test('replay-offline - group width: just enough index bits for a trace block\'s engine blocks, at most 5', () => {
  assert.deepEqual([1, 2, 3, 4, 6, 8, 9, 16, 32, 33, 40, 1024].map(groupBitsFor), [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5]);
});

test('replay-offline - only the prompt tail is synthesized when the hashes are not of the tokens', () => {
  const req = tr(0, [3, 4, 5], 27, 1);
  const full = synthesizePromptTokens(req, 10);
  const out = new Uint32Array(32).fill(99);
  assert.equal(synthesizePromptTokensInto(req, 10, out, 16), 27);
  assert.deepEqual(Array.from(out.subarray(16, 27)), Array.from(full.subarray(16)));
  assert.ok(out.subarray(0, 16).every((t) => t === 99), 'the head is left as it was');
  // Aligned sizes hash from the hash ids only; unaligned ones read the synthesized tokens, so the
  // replay synthesizes all of them.
  assert.equal(new TraceHashes(512, 64).readsPrompt, false);
  assert.equal(new TraceHashes(10, 4).readsPrompt, true);
});

test('replay-offline - engine block hashes: group identities, and the tokens hashes computeBlockHashes gives', () => {
  const hashes = new TraceHashes(512, 64);
  const a = { sh: new Uint32Array(64), sl: new Uint32Array(64), th: new Uint32Array(64), tl: new Uint32Array(64) };
  const b = { sh: new Uint32Array(64), sl: new Uint32Array(64), th: new Uint32Array(64), tl: new Uint32Array(64) };
  const reqs = [tr(0, [0, 1, 2], 1500, 1), tr(0, [0, 1, 3], 1536, 1), tr(0, [0, 1, 2, 4], 1600, 1), tr(0, [9], 100, 1), tr(0, [9, 9], 1024, 1)];
  for (const req of reqs) {
    const prompt = new Uint32Array(Math.min(req.inputLength, req.hashIds.length * 512));
    for (let i = 0; i < prompt.length; i++) prompt[i] = req.hashIds[Math.floor(i / 512)]!;
    const n = computeBlockHashes(prompt, prompt.length, 64, a.sh, a.sl, a.th, a.tl);
    assert.equal(hashes.blockHashes(req, prompt, b.sh, b.sl, b.th, b.tl), n);
    for (const k of ['th', 'tl'] as const) assert.deepEqual(b[k].subarray(0, n), a[k].subarray(0, n), `${k} of ${req.hashIds.join(',')}`);
    assert.equal(referenceHashes(req, 512, 64, a.sh, a.sl), n);
    for (const k of ['sh', 'sl'] as const) assert.deepEqual(b[k].subarray(0, n), a[k].subarray(0, n), `${k} of ${req.hashIds.join(',')}`);
  }
  const odd = new TraceHashes(10, 4);
  const req = tr(0, [3, 4, 5], 27, 1);
  const prompt = Uint32Array.from({ length: 27 }, (_, i) => req.hashIds[Math.floor(i / 10)]!);
  const n = odd.blockHashes(req, prompt, b.sh, b.sl, b.th, b.tl);
  assert.equal(n, computeBlockHashes(prompt, 27, 4, a.sh, a.sl, a.th, a.tl));
  for (const k of ['sh', 'sl', 'th', 'tl'] as const) assert.deepEqual(b[k].subarray(0, n), a[k].subarray(0, n));
});

test('replay-offline - a prompt larger than a rank is reported as rejected, not completed', () => {
  const r = runOfflineReplay([tr(0, [1, 2, 3], 12, 2), tr(0, [4], 4, 1)], { ...TINY, keepItlSamples: true, engineArgs: { ...TINY.engineArgs, numGpuBlocks: 2 } });
  assert.equal(r.status[0], RequestStatus.rejected);
  assert.equal(r.status[1], RequestStatus.completed);
  const rep = buildReplayReport(r);
  assert.equal(rep.num_requests, 2);
  assert.equal(rep.completed_requests, 1);
  assert.equal(collectSamples(r).ttftMs.length, 1);
});

test('replay-offline - invalid options are rejected with the flag name', () => {
  const bad: Array<[Partial<OfflineReplayOptions>, string]> = [
    [{ numWorkers: 0 }, '--num-workers'],
    [{ dataParallelSize: 1.5 }, '--data-parallel-size'],
    [{ speedupRatio: 0 }, '--speedup-ratio'],
    [{ decodeSpeedupRatio: -1 }, '--decode-speedup-ratio'],
    [{ arrivalSpeedupRatio: Number.NaN }, '--arrival-speedup-ratio'],
    [{ traceBlockSize: 0 }, '--trace-block-size'],
    [{ router: 'nope' as never }, '--router'],
    [{ engineArgs: { blockSize: 0 } }, 'block-size'],
  ];
  for (const [patch, field] of bad) {
    assert.throws(
      () => runOfflineReplay([tr(0, [1], 4, 1)], { ...TINY, ...patch }),
      (err: unknown) => err instanceof InvalidConfigError && err.message.startsWith(field),
      field,
    );
  }
});

test('replay-offline - an empty trace gives an empty report with null rates', () => {
  const rep = buildReplayReport(runOfflineReplay([], TINY));
  assert.equal(rep.num_requests, 0);
  assert.equal(rep.duration_ms, 0);
  assert.equal(rep.request_throughput_rps, null);
  assert.equal(rep.ttft_ms.mean, null);
});

test('replay-offline - report percentiles by selection equal the sort-based summary', async () => {
  const { summarize } = await import('../../src/report/stats.js');
  const { summarizeBySelection } = await import('../../src/replay/report.js');
  let x = 12345;
  const next = (): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 4294967296;
  };
  for (const n of [1, 2, 3, 7, 100, 1001, 50000]) {
    for (const kind of ['uniform', 'ties', 'sorted', 'reversed']) {
      const v = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        v[i] = kind === 'uniform' ? next() * 100 : kind === 'ties' ? Math.floor(next() * 5) : kind === 'sorted' ? i : n - i;
      }
      const a = summarize(v);
      const b = summarizeBySelection(v);
      for (const k of ['count', 'min', 'max', 'median', 'p50', 'p75', 'p90', 'p95', 'p99'] as const) assert.equal(b[k], a[k], `${kind} n=${n} ${k}`);
      assert.ok(Math.abs(b.mean - a.mean) < 1e-9 && Math.abs(b.std - a.std) < 1e-9);
    }
  }
});

test('replay-offline - the results digest is the same for the same replay and changes with any per-request value', () => {
  const reqs = [tr(0, [1, 2], 6, 3), tr(10, [1, 3], 8, 2), tr(100, [1, 3], 8, 2)];
  const a = runOfflineReplay(reqs, TINY), b = runOfflineReplay(reqs, TINY);
  const d = replayResultsDigest(a);
  assert.match(d, /^[0-9a-f]{16}$/);
  assert.equal(replayResultsDigest(b), d);
  for (const [name, arr] of [['lastTokenMs', b.lastTokenMs], ['reusedTokens', b.reusedTokens], ['rank', b.rank]] as const) {
    const keep = arr[2]!;
    arr[2] = keep + 1;
    assert.notEqual(replayResultsDigest(b), d, `${name} is covered`);
    arr[2] = keep;
  }
  assert.equal(replayResultsDigest(b), d);
});
