/**
 * EngineOptions.keepGeneratedTokens false (the offline replayer): generated tokens are drawn but
 * not stored, and blocks holding them get identity hashes. Everything the engine decides — what it
 * schedules, caches, evicts, preempts and reports — must be what it decides with the tokens kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, computeBlockHashes, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import type { EngineOptions, KvEventLog, PromptBlockHashes, StepResult } from '../../src/engine/types.js';
import { InvalidConfigError, InvalidRequestError } from '../../src/util/errors.js';
import { xorshift32 } from '../support/xorshift.js';

const BS = 4;

function makeEngine(options: EngineOptions): Engine {
  const args = normalizeEngineArgs({ numGpuBlocks: 48, blockSize: BS, maxNumSeqs: 6, maxNumBatchedTokens: 24, seed: 3 });
  return new Engine(args, createPolynomialPerfModel(), options);
}

function hashesOf(prompt: Uint32Array): PromptBlockHashes {
  const n = Math.floor(prompt.length / BS);
  const h = { numBlocks: n, seqHashHi: new Uint32Array(n), seqHashLo: new Uint32Array(n), tokHashHi: new Uint32Array(n), tokHashLo: new Uint32Array(n) };
  computeBlockHashes(prompt, prompt.length, BS, h.seqHashHi, h.seqHashLo, h.tokHashHi, h.tokHashLo);
  return h;
}

/** What a pass decided (hash values aside: generated blocks' differ by design). */
function decisions(r: StepResult, log: KvEventLog): unknown {
  return {
    prefillMs: r.prefillMs, decodeMs: r.decodeMs, scheduled: r.numScheduledTokens, preemptions: r.numPreemptions,
    tokenIds: Array.from(r.tokenIds.subarray(0, r.numTokens)), tokenReqs: Array.from(r.tokenRequestIds.subarray(0, r.numTokens)),
    finished: Array.from(r.finishedRequestIds.subarray(0, r.numFinished)),
    admittedIds: Array.from(r.admissionRequestIds.subarray(0, r.numAdmissions)),
    admittedCached: Array.from(r.admissionCachedTokens.subarray(0, r.numAdmissions)), fpm: { ...r.fpm },
    eventKinds: Array.from(log.kind.subarray(0, log.count)), eventCounts: Array.from(log.hashCount.subarray(0, log.count)),
  };
}

/**
 * Shared prefixes, prompts of whole blocks and not, evictions, preemptions (recomputing
 * generated blocks finds them by hash), and decode runs advanced at once, as the replayer does.
 */
function run(keepGeneratedTokens: boolean, keepPromptTokens: boolean): { trace: unknown[]; preemptions: number; hits: number } {
  const engine = makeEngine({ recordEventTokens: false, keepPromptTokens, keepGeneratedTokens });
  const next = xorshift32(29);
  const trace: unknown[] = [];
  const ms = new Float64Array(16);
  let id = 0;
  let hits = 0;
  for (let pass = 0; pass < 600; pass++) {
    if (pass % 5 === 0) {
      const len = next() % 3 === 0 ? 4 * (1 + (next() % 12)) : 1 + (next() % 50);
      const prompt = new Uint32Array(len);
      const prefix = next() % 3;
      for (let i = 0; i < len; i++) prompt[i] = i < 12 ? prefix * 100 + (i >> 2) : next() % 1000;
      engine.addRequestWithHashes(id++, prompt, 1 + (next() % 30), hashesOf(prompt));
    }
    const k = engine.decodeRunLength(4);
    const r = k > 0 ? engine.advanceDecode(k, ms) : engine.step(pass);
    for (let a = 0; a < r.numAdmissions; a++) hits += r.admissionCachedTokens[a] as number;
    engine.checkInvariants();
    trace.push({ k, ...(decisions(r, engine.takeEvents()) as object) });
  }
  return { trace, preemptions: engine.numPreemptionsTotal, hits };
}

test('engine generated identity - same decisions as with the generated tokens kept, in steps and decode runs', () => {
  for (const keepPrompt of [true, false]) {
    const kept = run(true, keepPrompt);
    const identity = run(false, keepPrompt);
    assert.ok(kept.preemptions > 0, 'the workload should preempt (and recompute generated blocks)');
    assert.ok(kept.hits > 0, 'the workload should hit the prefix cache');
    assert.deepEqual(identity, kept);
  }
});

test('engine generated identity - a preempted request finds its own generated blocks by their identity', () => {
  // Two requests outgrow a 12-block pool: the newer one (id 2) is preempted after generating a
  // few full blocks, the older one evicts two of them (leaves first), and when id 2 is readmitted
  // its prompt block and first two generated blocks are found again by hash, under the same ids.
  for (const keepGeneratedTokens of [true, false]) {
    const args = normalizeEngineArgs({ numGpuBlocks: 12, blockSize: BS, maxNumSeqs: 2, maxNumBatchedTokens: 64, seed: 1 });
    const e = new Engine(args, createPolynomialPerfModel(), { recordEventTokens: false, keepGeneratedTokens });
    let before: number[] = [];
    let after: number[] = [];
    for (let i = 0; i < 120 && (i < 3 || e.hasWork()); i++) {
      if (i === 0 || i === 2) {
        const p = Uint32Array.from({ length: 4 }, (_, k) => 100 * i + k + 1);
        e.addRequestWithHashes(i, p, 30, hashesOf(p));
      }
      const held = e.requestBlockIds(2);
      const r = e.step(i);
      e.checkInvariants();
      if (r.numPreemptions > 0) before = held;
      for (let a = 0; a < r.numAdmissions; a++) if (r.admissionRequestIds[a] === 2 && before.length > 0) after = e.requestBlockIds(2);
    }
    assert.equal(e.numPreemptionsTotal, 1, 'request 2 should be preempted once');
    assert.ok(before.length >= 4, `request 2 should hold generated full blocks when preempted (${before.join(', ')})`);
    assert.deepEqual(after.slice(0, 3), before.slice(0, 3), `readmitted, request 2 should reuse its cached blocks (keepGeneratedTokens ${keepGeneratedTokens})`);
    assert.equal(e.hasWork(), false);
  }
});

test('engine generated identity - tokens are not kept, seeded requests and token-carrying events are refused', () => {
  assert.throws(() => makeEngine({ keepGeneratedTokens: false }), (err: unknown) => err instanceof InvalidConfigError && /recordEventTokens false/.test(err.message));
  const e = makeEngine({ recordEventTokens: false, keepGeneratedTokens: false });
  const prompt = Uint32Array.from([1, 2, 3, 4, 5, 6]);
  assert.throws(() => e.addRequest(0, prompt, 4, 7), (err: unknown) => err instanceof InvalidRequestError && err.param === 'seed');
  assert.equal(e.numWaiting, 0, 'a refused request is not queued');
  e.addRequest(1, prompt, 4);
  e.step(0);
  assert.throws(() => e.requestTokens(1), /generated tokens were not kept/);
});

test('engine generated identity - a request longer than its first buffers grows its block ids and hashes', () => {
  // Buffers are first sized for the prompt + 65,536 generated tokens; this request generates more,
  // so without kept tokens the block ids and hashes grow on their own (growBlockBuffers).
  const outcomes: unknown[] = [];
  for (const keepGeneratedTokens of [true, false]) {
    const args = normalizeEngineArgs({ numGpuBlocks: 20000, blockSize: BS, maxNumSeqs: 2, maxNumBatchedTokens: 64, seed: 2 });
    const e = new Engine(args, createPolynomialPerfModel(), { recordEventTokens: false, keepGeneratedTokens, reserveBlocks: true });
    const prompt = Uint32Array.from({ length: 9 }, (_, i) => i + 1);
    e.addRequestWithHashes(0, prompt, 70_000, hashesOf(prompt));
    const ms = new Float64Array(BS);
    let tokens = 0, passes = 0, lastToken = 0;
    while (e.hasWork()) {
      const k = e.decodeRunLength(BS);
      const r = k > 0 ? e.advanceDecode(k, ms) : e.step(passes);
      passes += k > 0 ? k : 1;
      tokens += k > 0 ? k * r.numTokens : r.numTokens;
      if (r.numTokens > 0) lastToken = r.tokenIds[r.numTokens - 1] as number;
      if (passes === 40_000) e.checkInvariants();
    }
    e.checkInvariants();
    outcomes.push({ tokens, passes, lastToken, blocks: e.residentBlockHashes().length });
  }
  assert.equal((outcomes[0] as { tokens: number }).tokens, 70_000);
  assert.deepEqual(outcomes[1], outcomes[0]);
});
