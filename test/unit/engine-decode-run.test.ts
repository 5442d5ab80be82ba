/**
 * Decode runs: advanceDecode(k) must leave an engine exactly as k step() calls would (token ids,
 * slot state, hashes, RNG, the KV events and results of every later pass), and decodeRunLength
 * must stop before any pass that allocates, promotes, finishes or admits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, createInterpolatedPerfModel, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import type { EngineArgs, KvEventLog, PerfModel, StepResult } from '../../src/engine/types.js';
import { EngineInvariantError } from '../../src/engine/invariant.js';

const VOCAB = Uint32Array.from([7001, 7002, 7003, 7004, 7005, 7006, 7007, 7008]);

/** Decode time grows with the mean context length, so every pass of a run has its own time. */
function interpolated(): PerfModel {
  return createInterpolatedPerfModel({
    prefillIsl: Float64Array.from([1, 64, 512]),
    prefillTtftMs: Float64Array.from([5, 9, 40]),
    decodeActiveKvTokens: Float64Array.from([0, 64, 1024]),
    decodeContextLength: Float64Array.from([1, 16, 256]),
    decodeItl: Float64Array.from([2, 3.3, 9, 2.5, 4.1, 11, 4, 6.7, 17]),
  });
}

function prompt(len: number, salt: number): Uint32Array {
  return Uint32Array.from({ length: len }, (_, i) => 1 + ((i * 7 + salt * 13) % 50));
}

function snapResult(r: StepResult): unknown {
  return {
    prefillMs: r.prefillMs, decodeMs: r.decodeMs, sched: r.numScheduledTokens, pre: r.numPreemptions, prompt: r.numPromptTokensScheduled,
    ids: Array.from(r.tokenRequestIds.subarray(0, r.numTokens)), toks: Array.from(r.tokenIds.subarray(0, r.numTokens)),
    fin: Array.from(r.finishedRequestIds.subarray(0, r.numFinished)), reasons: Array.from(r.finishedReasons.subarray(0, r.numFinished)),
    adm: Array.from(r.admissionRequestIds.subarray(0, r.numAdmissions)), cached: Array.from(r.admissionCachedTokens.subarray(0, r.numAdmissions)),
    fpm: { ...r.fpm },
  };
}

function snapEvents(log: KvEventLog): unknown[] {
  const out: unknown[] = [];
  for (let e = 0; e < log.count; e++) {
    const from = log.hashStart[e] as number, n = log.hashCount[e] as number;
    out.push({
      id: log.firstEventId + e, kind: log.kind[e], parent: [log.hasParent[e], log.parentHi[e], log.parentLo[e]],
      seq: [Array.from(log.seqHashHi.subarray(from, from + n)), Array.from(log.seqHashLo.subarray(from, from + n))],
      tok: [Array.from(log.tokHashHi.subarray(from, from + n)), Array.from(log.tokHashLo.subarray(from, from + n))],
      tokens: Array.from(log.tokens.subarray(log.tokenStart[e] as number, (log.tokenStart[e] as number) + n * log.blockSize)),
    });
  }
  return out;
}

function snapState(e: Engine, ids: number[]): unknown {
  return {
    running: e.runningRequestIds(), waiting: e.waitingRequestIds(),
    tokens: ids.map((id) => Array.from(e.requestTokens(id))), blocks: ids.map((id) => e.requestBlockIds(id)),
    hashes: e.residentBlockHashes().map(String), free: e.freeBlockOrder(), inactive: e.inactiveBlockOrder(),
    active: e.numActiveBlocks, preemptions: e.numPreemptionsTotal,
  };
}

interface Arrival { pass: number; id: number; len: number; maxTokens: number; seed?: number }

/**
 * Drive two engines through the same arrivals: `stepped` with step() only, `fast` with
 * advanceDecode whenever a run is ahead. Compares everything after every pass or run, and returns
 * how many passes were fast-forwarded.
 */
function lockstep(args: Partial<EngineArgs>, perf: () => PerfModel, arrivals: Arrival[], maxRun = 1000): { coasted: number; runs: number } {
  const a = normalizeEngineArgs(args);
  const stepped = new Engine(a, perf(), { generatedVocabulary: VOCAB });
  const fast = new Engine(a, perf(), { generatedVocabulary: VOCAB });
  const ids = arrivals.map((x) => x.id);
  const ms = new Float64Array(maxRun);
  let pass = 0, coasted = 0, runs = 0;
  const add = (e: Engine, x: Arrival): void => {
    e.addRequest(x.id, prompt(x.len, x.id), x.maxTokens, x.seed);
  };
  for (let guard = 0; guard < 100_000; guard++) {
    for (const x of arrivals) if (x.pass === pass) { add(stepped, x); add(fast, x); }
    const pending = arrivals.some((x) => x.pass > pass);
    if (!stepped.hasWork() && !pending) break;
    const nextArrival = Math.min(...arrivals.filter((x) => x.pass > pass).map((x) => x.pass));
    let k = fast.decodeRunLength(Math.min(maxRun, nextArrival - pass));
    if (k > 0) {
      fast.advanceDecode(k, ms);
      for (let p = 0; p < k; p++) {
        const r = stepped.step(pass + p);
        assert.equal(r.decodeMs, ms[p], `decode ms of pass ${pass + p}`);
        assert.equal(r.prefillMs, 0);
        assert.equal(r.numFinished + r.numAdmissions + r.numPreemptions, 0, `pass ${pass + p} is plain`);
      }
      assert.equal(stepped.takeEvents().count, 0, 'a run emits no KV event');
      assert.equal(fast.takeEvents().count, 0);
      coasted += k;
      runs++;
      pass += k;
    } else {
      stepped.step(pass);
      fast.step(pass);
      assert.deepEqual(snapEvents(fast.takeEvents()), snapEvents(stepped.takeEvents()), `KV events of pass ${pass}`);
      pass++;
      k = 1;
    }
    assert.deepEqual(snapResult((fast as unknown as { result: StepResult }).result), snapResult((stepped as unknown as { result: StepResult }).result), `result at pass ${pass}`);
    assert.deepEqual(snapState(fast, ids), snapState(stepped, ids), `state at pass ${pass}`);
    fast.checkInvariants();
  }
  assert.equal(stepped.hasWork(), false);
  assert.equal(fast.hasWork(), false);
  // Same RNG state: one more request draws the same ids on both.
  const probe: Arrival = { pass, id: 999, len: 3, maxTokens: 6 };
  add(stepped, probe); add(fast, probe);
  const sa: number[] = [], fa: number[] = [];
  for (let p = 0; p < 8; p++) {
    const r1 = stepped.step(pass + p), r2 = fast.step(pass + p);
    sa.push(...r1.tokenIds.subarray(0, r1.numTokens)); fa.push(...r2.tokenIds.subarray(0, r2.numTokens));
  }
  assert.deepEqual(fa, sa, 'RNG state after the runs');
  return { coasted, runs };
}

const MIXED: Arrival[] = [
  { pass: 0, id: 1, len: 5, maxTokens: 30 },
  { pass: 0, id: 2, len: 7, maxTokens: 23, seed: 4242 },
  { pass: 3, id: 3, len: 10, maxTokens: 41 },
  { pass: 20, id: 4, len: 4, maxTokens: 17, seed: 7 },
  { pass: 21, id: 5, len: 13, maxTokens: 9 },
  { pass: 60, id: 6, len: 5, maxTokens: 50 },
];

for (const [name, perf] of [['polynomial', createPolynomialPerfModel], ['interpolated', interpolated]] as const) {
  test(`engine decode-run - advanceDecode(k) equals k × step(), several requests at different block phases (${name})`, { timeout: 20_000 }, () => {
    const { coasted, runs } = lockstep({ blockSize: 4, numGpuBlocks: 64, maxNumSeqs: 8, maxNumBatchedTokens: 64, seed: 3 }, perf, MIXED);
    assert.ok(runs >= 5 && coasted >= 20, `runs happened: ${runs} runs, ${coasted} passes`);
  });
}

test('engine decode-run - prefix caching off, long block size, capped runs', { timeout: 20_000 }, () => {
  const { coasted } = lockstep({ blockSize: 16, numGpuBlocks: 64, maxNumSeqs: 8, maxNumBatchedTokens: 64, enablePrefixCaching: false, seed: 9 }, interpolated, MIXED, 5);
  assert.ok(coasted >= 40, `${coasted} passes coasted`);
});

test('engine decode-run - small pool: preemption and eviction around the runs stay identical', { timeout: 20_000 }, () => {
  const arrivals: Arrival[] = [
    { pass: 0, id: 1, len: 9, maxTokens: 40 },
    { pass: 0, id: 2, len: 9, maxTokens: 40, seed: 11 },
    { pass: 2, id: 3, len: 6, maxTokens: 30 },
    { pass: 30, id: 4, len: 9, maxTokens: 12 },
    { pass: 90, id: 5, len: 9, maxTokens: 12 },
  ];
  const { coasted } = lockstep({ blockSize: 4, numGpuBlocks: 12, maxNumSeqs: 4, maxNumBatchedTokens: 16, seed: 5 }, createPolynomialPerfModel, arrivals);
  assert.ok(coasted > 0);
});

test('engine decode-run - decodeRunLength is 0 before a visible pass', { timeout: 10_000 }, () => {
  const e = new Engine(normalizeEngineArgs({ blockSize: 4, numGpuBlocks: 64, seed: 1 }), createPolynomialPerfModel());
  assert.equal(e.decodeRunLength(100), 0, 'idle');
  e.addRequest(1, prompt(5, 1), 20);
  assert.equal(e.decodeRunLength(100), 0, 'waiting request');
  e.step(0); // prefill 5 tokens + first token: seqLen 6, 2 blocks (8 tokens)
  // Passes emit tokens 6 and 7; token 8 needs a third block.
  assert.equal(e.decodeRunLength(100), 2);
  assert.equal(e.decodeRunLength(1), 1, 'capped by maxPasses');
  const ms = new Float64Array(4);
  e.advanceDecode(2, ms);
  assert.equal(e.decodeRunLength(100), 0, 'block boundary: allocate (and promote) next');
  assert.throws(() => e.advanceDecode(1, ms), EngineInvariantError);
  e.step(2); // seqLen 9: 3 blocks
  assert.equal(e.decodeRunLength(100), 3);
  e.addRequest(2, prompt(3, 2), 5);
  assert.equal(e.decodeRunLength(100), 0, 'a waiting request is admitted next pass');
  e.abortRequest(2);
  // Finishing: end length 5 + 20 = 25.
  const f = new Engine(normalizeEngineArgs({ blockSize: 64, numGpuBlocks: 64, seed: 1 }), createPolynomialPerfModel());
  f.addRequest(1, prompt(5, 1), 4);
  f.step(0); // seqLen 6, end 9: tokens 6, 7 plain; token 8 finishes the request
  assert.equal(f.decodeRunLength(100), 2);
  f.advanceDecode(2, ms);
  assert.equal(f.decodeRunLength(100), 0, 'the next pass finishes the request');
  const r = f.step(3);
  assert.equal(r.numFinished, 1);
});

test('engine decode-run - a run asked about again follows aborts, arrivals and clearAll', { timeout: 10_000 }, () => {
  const e = new Engine(normalizeEngineArgs({ blockSize: 64, numGpuBlocks: 64, seed: 1 }), createPolynomialPerfModel());
  e.addRequest(1, prompt(5, 1), 4); // seqLen 6 after the first pass, end 9: 2 plain passes
  e.addRequest(2, prompt(5, 2), 40); // end 45: 38 plain passes
  e.step(0);
  assert.equal(e.decodeRunLength(100), 2);
  assert.equal(e.decodeRunLength(2), 2);
  assert.equal(e.decodeRunLength(100), 2, 'asked again, unchanged');
  e.abortRequest(1);
  assert.equal(e.decodeRunLength(100), 38, 'the request that ended the run is gone');
  assert.equal(e.decodeRunLength(5), 5);
  const ms = new Float64Array(64);
  e.decodeRunMs(38, ms);
  assert.ok((ms[0] as number) > 0 && ms[37] === ms[0]);
  e.advanceDecode(3, ms);
  assert.equal(e.decodeRunLength(100), 35);
  e.addRequest(3, prompt(5, 3), 4);
  assert.equal(e.decodeRunLength(100), 0, 'an arrival is admitted next pass');
  assert.throws(() => e.decodeRunMs(1, ms), EngineInvariantError);
  e.abortRequest(3);
  assert.equal(e.decodeRunLength(100), 35);
  e.clearAll();
  assert.equal(e.decodeRunLength(100), 0, 'nothing runs after clearAll');
});
