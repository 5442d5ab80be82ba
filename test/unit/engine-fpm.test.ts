import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import type { EngineArgs, FpmSnapshot, PerfModel } from '../../src/engine/types.js';

function makeEngine(over: Partial<EngineArgs>, perf: PerfModel = createPolynomialPerfModel()): Engine {
  return new Engine(normalizeEngineArgs({ numGpuBlocks: 16, blockSize: 4, maxNumSeqs: 2, maxNumBatchedTokens: 64, ...over }), perf);
}

function range(from: number, n: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = from + i;
  return a;
}

test('fpm - scheduled and queued fields with population variances', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 4), 5);
  e.addRequest(2, range(100, 8), 5);
  e.addRequest(3, range(200, 2), 5);
  e.addRequest(4, range(300, 6), 5);
  let r = e.step(0);
  e.checkInvariants();
  const f1: FpmSnapshot = { ...r.fpm };
  assert.equal(f1.numPrefillRequests, 2);
  assert.equal(f1.sumPrefillTokens, 12);
  assert.equal(f1.varPrefillLength, 4, 'prompt lengths 4 and 8');
  assert.equal(f1.sumPrefillKvTokens, 0);
  assert.equal(f1.numDecodeRequests, 0);
  assert.equal(f1.varDecodeKvTokens, 0, 'empty set: variance 0');
  assert.equal(f1.numQueuedPrefill, 2, 'max-num-seqs 2 keeps requests 3 and 4 waiting');
  assert.equal(f1.sumQueuedPrefillTokens, 8);
  assert.equal(f1.varQueuedPrefillLength, 4, 'prompt lengths 2 and 6');
  assert.equal(f1.numQueuedDecode, 0);

  r = e.step(1);
  e.checkInvariants();
  assert.equal(r.fpm.numPrefillRequests, 0);
  assert.equal(r.fpm.numDecodeRequests, 2);
  assert.equal(r.fpm.sumDecodeKvTokens, 5 + 9, 'prompt + 1 generated token each');
  assert.equal(r.fpm.varDecodeKvTokens, 4);
});

test('fpm - a chunk after a cached prefix reports the prefix as prefill KV tokens', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 8), 1);
  e.step(0);
  e.addRequest(2, new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 1);
  const r = e.step(1);
  assert.equal(r.fpm.numPrefillRequests, 1);
  assert.equal(r.fpm.sumPrefillTokens, 2);
  assert.equal(r.fpm.sumPrefillKvTokens, 8);
  assert.equal(r.numAdmissions, 1);
  assert.equal(r.admissionCachedTokens[0], 8);
  assert.equal(r.admissionPromptTokens[0], 10);
});

test('fpm - preempted requests are queued decode work with prompt + generated tokens', () => {
  const e = makeEngine({ numGpuBlocks: 4, maxNumSeqs: 4 });
  e.addRequest(1, range(10, 6), 20);
  e.addRequest(2, range(20, 6), 20);
  let r = e.step(0);
  for (let t = 1; t < 3; t++) r = e.step(t);
  assert.equal(r.numPreemptions, 1);
  assert.equal(r.fpm.numQueuedDecode, 1);
  assert.equal(r.fpm.sumQueuedDecodeKvTokens, 8, 'request 2: 6 prompt + 2 generated');
  assert.equal(r.fpm.varQueuedDecodeKvTokens, 0);
  assert.equal(r.fpm.numQueuedPrefill, 0);
});

test('fpm - the perf model sees the prefill batch aggregate and the ready decode batch', () => {
  const calls: string[] = [];
  const perf: PerfModel = {
    prefillMs(count, totalIsl, totalPrefix) {
      calls.push(`prefill ${count} ${totalIsl} ${totalPrefix}`);
      return 10;
    },
    decodeMs(active, total, meanCtx) {
      calls.push(`decode ${active} ${total} ${meanCtx}`);
      return 2;
    },
  };
  const e = makeEngine({ maxNumBatchedTokens: 8 }, perf);
  e.addRequest(1, range(1, 8), 1);
  e.step(0);
  e.addRequest(2, new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 3);
  e.addRequest(3, range(50, 3), 3);
  const r = e.step(1);
  assert.deepEqual(calls, [
    'prefill 1 8 0',
    'decode 8 64 8',
    'prefill 2 13 8',
    'decode 16 64 6.5',
  ]);
  assert.equal(r.prefillMs, 10);
  assert.equal(r.decodeMs, 2);
});

test('fpm - a perf model returning NaN fails the step instead of producing a free pass', () => {
  const perf: PerfModel = { prefillMs: () => Number.NaN, decodeMs: () => 1 };
  const e = makeEngine({}, perf);
  e.addRequest(1, range(1, 4), 1);
  assert.throws(() => e.step(0), /perf model returned NaN/);
});
