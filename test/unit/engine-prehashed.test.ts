import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xxh3 } from '@node-rs/xxhash';
import { Engine, computeBlockHashes, computeSequenceHashes, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { xxh3Tokens } from '../../src/engine/kv/xxh3.js';
import type { EngineArgs, EngineOptions, KvEventLog, PromptBlockHashes, StepResult } from '../../src/engine/types.js';
import { InvalidConfigError, InvalidRequestError } from '../../src/util/errors.js';
import { xorshift32 } from '../support/xorshift.js';

function makeEngine(over: Partial<EngineArgs>, options?: EngineOptions): Engine {
  const args = normalizeEngineArgs({ numGpuBlocks: 60, blockSize: 4, maxNumSeqs: 6, maxNumBatchedTokens: 24, seed: 5, ...over });
  return new Engine(args, createPolynomialPerfModel(), options);
}

function hashesOf(prompt: Uint32Array, blockSize: number): PromptBlockHashes {
  const n = Math.floor(prompt.length / blockSize);
  const h = { numBlocks: n, seqHashHi: new Uint32Array(n), seqHashLo: new Uint32Array(n), tokHashHi: new Uint32Array(n), tokHashLo: new Uint32Array(n) };
  assert.equal(computeBlockHashes(prompt, prompt.length, blockSize, h.seqHashHi, h.seqHashLo, h.tokHashHi, h.tokHashLo), n);
  return h;
}

/** Everything observable of one step and its events, as plain data. */
function snapshot(r: StepResult, log: KvEventLog, withTokens: boolean): unknown {
  let hashes = 0;
  for (let e = 0; e < log.count; e++) hashes += log.hashCount[e] as number;
  let tokens = 0;
  for (let e = 0; e < log.count; e++) if (log.kind[e] === 1) tokens += (log.hashCount[e] as number) * log.blockSize;
  return {
    prefillMs: r.prefillMs, decodeMs: r.decodeMs, scheduled: r.numScheduledTokens, preemptions: r.numPreemptions,
    tokenIds: Array.from(r.tokenIds.subarray(0, r.numTokens)), tokenReqs: Array.from(r.tokenRequestIds.subarray(0, r.numTokens)),
    finished: Array.from(r.finishedRequestIds.subarray(0, r.numFinished)),
    admitted: Array.from(r.admissionCachedTokens.subarray(0, r.numAdmissions)), fpm: { ...r.fpm },
    first: log.firstEventId, kinds: Array.from(log.kind.subarray(0, log.count)), parents: Array.from(log.parentLo.subarray(0, log.count)),
    counts: Array.from(log.hashCount.subarray(0, log.count)),
    seq: Array.from(log.seqHashLo.subarray(0, hashes)), seqHi: Array.from(log.seqHashHi.subarray(0, hashes)),
    tok: Array.from(log.tokHashLo.subarray(0, hashes)), tokHi: Array.from(log.tokHashHi.subarray(0, hashes)),
    tokens: withTokens ? Array.from(log.tokens.subarray(0, tokens)) : [],
  };
}

/** A workload with shared prefixes, evictions and preemptions; `prehashed` picks the add path. */
function run(prehashed: boolean, options?: EngineOptions, withoutTokHashes = false): { steps: unknown[]; preemptions: number } {
  const bs = 4;
  const engine = makeEngine({ blockSize: bs }, options);
  const next = xorshift32(11);
  const steps: unknown[] = [];
  let id = 0;
  for (let step = 0; step < 400; step++) {
    if (step % 4 === 0) {
      const len = 1 + (next() % 70);
      const prompt = new Uint32Array(len);
      const prefix = next() % 3;
      for (let i = 0; i < len; i++) prompt[i] = i < 16 ? prefix * 100 + (i >> 2) : next() % 1000;
      const maxTokens = 1 + (next() % 40);
      if (prehashed) engine.addRequestWithHashes(id++, prompt, maxTokens, withoutTokHashes ? { ...hashesOf(prompt, bs), tokHashHi: null, tokHashLo: null } : hashesOf(prompt, bs));
      else engine.addRequest(id++, prompt, maxTokens);
    }
    const r = engine.step(step);
    engine.checkInvariants();
    steps.push(snapshot(r, engine.takeEvents(), options?.recordEventTokens !== false));
  }
  return { steps, preemptions: engine.numPreemptionsTotal };
}

test('engine prehashed - addRequestWithHashes gives the same steps, events and blocks as addRequest', () => {
  const plain = run(false);
  const hashed = run(true);
  assert.ok(plain.preemptions > 0, 'the workload should preempt');
  assert.deepEqual(hashed, plain);
});

test('engine prehashed - without event tokens the events carry the same hashes and no token ids', () => {
  const plain = run(false);
  const lean = run(true, { recordEventTokens: false });
  const strip = (s: unknown): unknown => ({ ...(s as object), tokens: [] });
  assert.deepEqual(lean.steps, plain.steps.map(strip));
  const engine = makeEngine({}, { recordEventTokens: false });
  engine.addRequest(1, Uint32Array.from({ length: 9 }, (_, i) => i), 2);
  engine.step(0);
  const log = engine.takeEvents();
  assert.ok(log.count > 0);
  assert.equal(log.tokenStart[0], 0);
  assert.equal(log.tokens.length, 0);
});

test('engine prehashed - an engine recording no KV events takes null tokens hashes, schedules the same and records nothing', () => {
  const plain = run(false);
  const quiet = run(true, { recordKvEvents: false }, true);
  const noEvents = (s: unknown): unknown => ({ ...(s as object), first: 0, kinds: [], parents: [], counts: [], seq: [], seqHi: [], tok: [], tokHi: [], tokens: [] });
  assert.deepEqual(quiet.steps.map(noEvents), plain.steps.map(noEvents));
  assert.ok(quiet.steps.every((s) => (s as { kinds: number[] }).kinds.length === 0), 'no events recorded');
  const prompt = Uint32Array.from({ length: 10 }, (_, i) => i);
  assert.throws(() => makeEngine({}).addRequestWithHashes(1, prompt, 1, { ...hashesOf(prompt, 4), tokHashHi: null, tokHashLo: null }), InvalidRequestError);
});

test('engine prehashed - without kept prompt tokens the steps are the same, invariants hold, and requestTokens refuses', () => {
  const plain = run(false, { recordEventTokens: false });
  const lean = run(true, { recordEventTokens: false, keepPromptTokens: false });
  assert.deepEqual(lean.steps, plain.steps);
  assert.throws(() => makeEngine({}, { keepPromptTokens: false }), (e: unknown) => e instanceof InvalidConfigError && e.field === 'keepPromptTokens');
  const engine = makeEngine({}, { recordEventTokens: false, keepPromptTokens: false });
  const prompt = Uint32Array.from({ length: 10 }, (_, i) => i + 1);
  engine.addRequestWithHashes(1, prompt, 3, hashesOf(prompt, 4));
  engine.addRequest(2, prompt, 3);
  assert.throws(() => engine.requestTokens(1), /prompt tokens were not kept/);
  assert.deepEqual(Array.from(engine.requestTokens(2)), Array.from(prompt), 'a request added without hashes keeps its tokens');
  for (let t = 0; engine.hasWork(); t++) {
    engine.step(t);
    engine.checkInvariants();
  }
});

test('engine prehashed - without kept prompt tokens, outputs past the initial buffer (step and coasted decode runs) hash the same blocks', () => {
  // 70,000 output tokens outgrow the 65,536 generated tokens a slot reserves up front.
  const drive = (options: EngineOptions, coast: boolean): { digest: number[]; tokens: number } => {
    const engine = makeEngine({ numGpuBlocks: 17600, maxNumBatchedTokens: 64 }, { recordEventTokens: false, ...options });
    const prompt = Uint32Array.from({ length: 10 }, (_, i) => 7 + i);
    engine.addRequestWithHashes(1, prompt, 70_000, hashesOf(prompt, 4));
    const ms = new Float64Array(4096);
    let acc = 0, count = 0, tokens = 0;
    const eat = (log: KvEventLog): void => {
      for (let e = 0; e < log.count; e++) {
        const start = log.hashStart[e] as number;
        for (let j = 0; j < (log.hashCount[e] as number); j++) {
          acc = (Math.imul(acc ^ (log.seqHashLo[start + j] as number), 0x9e3779b1) + (log.seqHashHi[start + j] as number)) | 0;
          count++;
        }
      }
    };
    for (let t = 0; engine.hasWork(); t++) {
      const k = coast ? engine.decodeRunLength(4096) : 0;
      if (k > 0) {
        engine.decodeRunMs(k, ms);
        tokens += engine.advanceDecode(k, ms).numTokens * k;
      } else tokens += engine.step(t).numTokens;
      eat(engine.takeEvents());
    }
    engine.checkInvariants();
    return { digest: [acc, count], tokens };
  };
  const kept = drive({}, false);
  assert.equal(kept.tokens, 70_000);
  assert.ok((kept.digest[1] as number) > 17_000, 'every full block was stored');
  assert.deepEqual(drive({ keepPromptTokens: false }, false), kept);
  assert.deepEqual(drive({ keepPromptTokens: false }, true), kept);
});

test('engine prehashed - the prefix of a prehashed request is found like a hashed one', () => {
  const engine = makeEngine({});
  const prompt = Uint32Array.from({ length: 20 }, (_, i) => i * 3);
  engine.addRequest(1, prompt, 1);
  engine.step(0);
  engine.step(1);
  engine.addRequestWithHashes(2, prompt, 1, hashesOf(prompt, 4));
  const r = engine.step(2);
  assert.equal(r.numAdmissions, 1);
  assert.equal(r.admissionCachedTokens[0], 20);
});

test('engine prehashed - hashes for the wrong number of blocks or too-short arrays throw InvalidRequestError', () => {
  const engine = makeEngine({});
  const prompt = Uint32Array.from({ length: 10 }, (_, i) => i);
  const good = hashesOf(prompt, 4);
  assert.throws(() => engine.addRequestWithHashes(1, prompt, 1, { ...good, numBlocks: 3 }), InvalidRequestError);
  assert.throws(() => engine.addRequestWithHashes(1, prompt, 1, { ...good, tokHashLo: new Uint32Array(1) }), InvalidRequestError);
  assert.equal(engine.numWaiting, 0);
  engine.addRequestWithHashes(1, prompt, 1, good);
  assert.equal(engine.numWaiting, 1);
});

test('engine prehashed - computeBlockHashes agrees with computeSequenceHashes and the tokens hash of each block', () => {
  const next = xorshift32(3);
  const tokens = Uint32Array.from({ length: 300 }, () => next());
  const h = hashesOf(tokens, 64);
  const seqHi = new Uint32Array(4);
  const seqLo = new Uint32Array(4);
  assert.equal(computeSequenceHashes(tokens, 300, 64, seqHi, seqLo), 4);
  assert.deepEqual(h.seqHashHi, seqHi);
  assert.deepEqual(h.seqHashLo, seqLo);
  const out = new Uint32Array(2);
  for (let b = 0; b < 4; b++) {
    xxh3Tokens(tokens, b * 64, 64, out);
    assert.deepEqual([h.tokHashHi![b], h.tokHashLo![b]], [out[0], out[1]]);
  }
  assert.throws(() => computeBlockHashes(tokens, 300, 64, seqHi, seqLo, new Uint32Array(3), new Uint32Array(4)), RangeError);
});

test('engine prehashed - xxh3Tokens stays exact for extreme token values and runs of one repeated token', () => {
  const out = new Uint32Array(2);
  const check = (tokens: Uint32Array, what: string): void => {
    xxh3Tokens(tokens, 0, tokens.length, out);
    const want = xxh3.xxh64(Buffer.from(tokens.buffer, tokens.byteOffset, tokens.byteLength), 1337n);
    assert.equal((BigInt(out[0]!) << 32n) | BigInt(out[1]!), want, `${what}, ${tokens.length} tokens`);
  };
  for (let count = 0; count <= 300; count++) {
    check(new Uint32Array(count).fill(0xffffffff), 'all ones');
    check(new Uint32Array(count).fill(0x80000000), 'high bit');
    check(Uint32Array.from({ length: count }, (_, i) => (i & 1 ? 0xffffffff : 0)), 'alternating');
    check(new Uint32Array(count).fill(count), 'repeated count');
    check(new Uint32Array(count).fill(count), 'repeated count again (memo)');
    check(new Uint32Array(count).fill(7), 'repeated 7 (memo across lengths)');
  }
});
