import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { AddOutcome, FinishReason } from '../../src/engine/types.js';
import type { EngineArgs, StepResult } from '../../src/engine/types.js';
import { InvalidRequestError } from '../../src/util/errors.js';

function makeEngine(over: Partial<EngineArgs>): Engine {
  return new Engine(
    normalizeEngineArgs({ numGpuBlocks: 10, blockSize: 4, maxNumSeqs: 4, maxNumBatchedTokens: 8, ...over }),
    createPolynomialPerfModel(),
  );
}

function range(from: number, n: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = from + i;
  return a;
}

/** Plain copy of what one step reported, taken before the next step overwrites it. */
interface Pass {
  tokens: number[];
  finished: Array<[number, number]>;
  admitted: Array<[number, number]>;
  scheduled: number;
  promptScheduled: number;
  preemptions: number;
  prefillMs: number;
  decodeMs: number;
}

function step(e: Engine, now: number): Pass {
  const r: StepResult = e.step(now);
  e.checkInvariants();
  const p: Pass = {
    tokens: Array.from(r.tokenRequestIds.subarray(0, r.numTokens)),
    finished: [],
    admitted: [],
    scheduled: r.numScheduledTokens,
    promptScheduled: r.numPromptTokensScheduled,
    preemptions: r.numPreemptions,
    prefillMs: r.prefillMs,
    decodeMs: r.decodeMs,
  };
  for (let i = 0; i < r.numFinished; i++) p.finished.push([r.finishedRequestIds[i] as number, r.finishedReasons[i] as number]);
  for (let i = 0; i < r.numAdmissions; i++) p.admitted.push([r.admissionRequestIds[i] as number, r.admissionCachedTokens[i] as number]);
  for (let i = 0; i < r.numTokens; i++) {
    const id = r.tokenIds[i] as number;
    assert.ok(id >= 1000 && id < 2000, `token id ${id} is in [1000, 2000)`);
  }
  return p;
}

test('scheduler - a prompt is prefilled in budget-sized chunks and its first token comes with the last chunk', () => {
  const e = makeEngine({});
  assert.equal(e.addRequest(1, range(1, 10), 3), AddOutcome.queued);
  let p = step(e, 0);
  assert.deepEqual(p.admitted, [[1, 0]]);
  assert.equal(p.promptScheduled, 8);
  assert.deepEqual(p.tokens, [], 'prompt not finished: no token');
  assert.deepEqual(e.requestBlockIds(1), [0, 1], 'two full blocks for 8 computed tokens');
  assert.ok(p.prefillMs > 0);
  assert.equal(p.decodeMs, 0, 'no decoding request: no decode time');

  p = step(e, 1);
  assert.equal(p.promptScheduled, 2);
  assert.deepEqual(p.tokens, [1], 'first token in the pass that finishes the prompt');
  assert.deepEqual(e.requestBlockIds(1), [0, 1, 2], 'third block is partial (tokens 9, 10 + first output)');
  assert.ok(p.decodeMs >= 1);

  p = step(e, 2);
  assert.equal(p.scheduled, 1, 'decode schedules exactly one token');
  assert.equal(p.promptScheduled, 0);
  assert.equal(p.prefillMs, 0);
  assert.deepEqual(p.tokens, [1]);

  p = step(e, 3);
  assert.deepEqual(p.tokens, [1]);
  assert.deepEqual(p.finished, [[1, FinishReason.length]], 'completes at max tokens');
  assert.equal(e.numRunning, 0);
  assert.equal(e.hasWork(), false);
  assert.equal(e.numActiveBlocks, 0);
  assert.deepEqual(e.inactiveBlockOrder(), [2, 1, 0], 'released leaf first, so the leaf is evicted first');
  assert.deepEqual(e.freeBlockOrder().slice(0, 3), [3, 4, 5], 'the destroyed partial block 3 is reused next');
});

test('scheduler - a cached prefix is reused and revived blocks leave the eviction queue', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 10), 3);
  for (let t = 0; t < 4; t++) step(e, t);
  assert.deepEqual(e.inactiveBlockOrder(), [2, 1, 0]);

  const prompt = new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8, 99, 98]);
  e.addRequest(2, prompt, 1);
  const p = step(e, 10);
  assert.deepEqual(p.admitted, [[2, 8]], 'two cached blocks = 8 prefix tokens');
  assert.equal(p.promptScheduled, 2, 'only the uncached tail is computed');
  assert.deepEqual(p.tokens, [2]);
  assert.deepEqual(p.finished, [[2, FinishReason.length]]);
  assert.deepEqual(e.inactiveBlockOrder(), [2, 1, 0], 'revived 0 and 1 re-entered the queue after 2');
  assert.equal(e.prefixQueryTokensTotal, 20);
  assert.equal(e.prefixHitTokensTotal, 8);
});

test('scheduler - a fully cached prompt computes nothing and emits its first token at once', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 8), 1);
  step(e, 0);
  step(e, 1);
  e.addRequest(2, range(1, 8), 2);
  const p = step(e, 2);
  assert.deepEqual(p.admitted, [[2, 8]]);
  assert.equal(p.scheduled, 0);
  assert.equal(p.prefillMs, 0, 'no new prompt tokens: no prefill time');
  assert.deepEqual(p.tokens, [2]);
  assert.ok(p.decodeMs >= 1);
});

test('scheduler - two requests sharing a prefix share its blocks with reference counts', () => {
  const e = makeEngine({ maxNumBatchedTokens: 64 });
  e.addRequest(1, range(1, 9), 5);
  step(e, 0);
  e.addRequest(2, new Uint32Array([1, 2, 3, 4, 5, 6, 7, 8, 50]), 5);
  const p = step(e, 1);
  assert.deepEqual(p.admitted, [[2, 8]]);
  assert.deepEqual(e.requestBlockIds(1).slice(0, 2), [0, 1]);
  assert.deepEqual(e.requestBlockIds(2).slice(0, 2), [0, 1], 'same physical blocks');
  e.abortRequest(1);
  e.checkInvariants();
  assert.deepEqual(e.inactiveBlockOrder(), [], 'still referenced by request 2');
  e.abortRequest(2);
  e.checkInvariants();
  assert.deepEqual(e.inactiveBlockOrder(), [1, 0]);
});

test('scheduler - with prefix caching off blocks are never reused and nothing is cached', () => {
  const e = makeEngine({ enablePrefixCaching: false });
  e.addRequest(1, range(1, 8), 2);
  step(e, 0);
  step(e, 1);
  assert.equal(e.numInactiveBlocks, 0);
  e.addRequest(2, range(1, 8), 1);
  const p = step(e, 2);
  assert.deepEqual(p.admitted, [[2, 0]], 'no prefix hit without prefix caching');
  assert.equal(e.takeEvents().count, 0, 'no KV events without prefix caching');
});

test('scheduler - chunked prefill splits a second prompt across passes', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 6), 4);
  e.addRequest(2, range(100, 6), 4);
  let p = step(e, 0);
  assert.deepEqual(p.admitted, [[1, 0], [2, 0]], 'both admitted, the second with a 2-token chunk');
  assert.equal(p.promptScheduled, 8);
  assert.deepEqual(p.tokens, [1]);
  p = step(e, 1);
  assert.equal(p.scheduled, 5, '1 decode token + the 4 remaining prompt tokens');
  assert.equal(p.promptScheduled, 4);
  assert.deepEqual(p.tokens, [1, 2]);
});

test('scheduler - without chunked prefill a prompt that does not fit the remaining budget waits', () => {
  const e = makeEngine({ enableChunkedPrefill: false });
  e.addRequest(1, range(1, 6), 4);
  e.addRequest(2, range(100, 6), 4);
  let p = step(e, 0);
  assert.deepEqual(p.admitted, [[1, 0]]);
  assert.deepEqual(e.waitingRequestIds(), [2]);
  p = step(e, 1);
  assert.deepEqual(p.admitted, [[2, 0]], '1 decode token leaves 7 ≥ 6');
  assert.equal(p.scheduled, 7);
  assert.equal(e.addRequest(3, range(1, 9), 1), AddOutcome.rejectedTooLarge, 'prompt > max-num-batched-tokens can never run');
});

test('scheduler - admission waits until the whole known sequence fits, without preempting', () => {
  const e = makeEngine({ numGpuBlocks: 4 });
  e.addRequest(1, range(1, 8), 6);
  e.addRequest(2, range(100, 8), 1);
  let p = step(e, 0);
  assert.deepEqual(p.admitted, [[1, 0]]);
  assert.deepEqual(e.requestBlockIds(1), [0, 1, 2], 'two full blocks + the partial for the first token');
  for (let t = 1; t < 6; t++) {
    p = step(e, t);
    assert.equal(p.preemptions, 0);
    if (t < 5) assert.deepEqual(e.waitingRequestIds(), [2], `pass ${t}: 2 blocks needed, 1 free`);
  }
  assert.deepEqual(p.finished, [[1, FinishReason.length]]);
  p = step(e, 7);
  assert.deepEqual(p.admitted, [[2, 0]]);
});

test('scheduler - at the admission gate, blocks shared with running requests cost nothing', () => {
  const e = makeEngine({ numGpuBlocks: 4, maxNumBatchedTokens: 16 });
  e.addRequest(1, range(1, 8), 6);
  let p = step(e, 0);
  assert.deepEqual(p.admitted, [[1, 0]]);
  assert.equal(e.numFreeBlocks, 1);
  // Three blocks, two of them request 1's (active): the one free block is enough.
  e.addRequest(2, Uint32Array.from([...range(1, 8), 500, 501]), 3);
  p = step(e, 1);
  assert.deepEqual(p.admitted, [[2, 8]]);
  assert.deepEqual(e.requestBlockIds(2).slice(0, 2), e.requestBlockIds(1).slice(0, 2));
});

test('scheduler - a prompt that leaves no room for its first token is rejected at once', () => {
  const e = makeEngine({ numGpuBlocks: 4 });
  assert.equal(e.addRequest(1, range(1, 17), 1), AddOutcome.rejectedTooLarge, 'larger than the cache');
  assert.equal(e.addRequest(1, range(1, 16), 1), AddOutcome.rejectedTooLarge, 'fills the cache exactly');
  assert.equal(e.hasWork(), false);
  assert.equal(e.addRequest(1, range(1, 15), 1), AddOutcome.queued, 'the id is free again and 15 + 1 tokens fit');
});

test('scheduler - a sequence that outgrows the cache preempts itself and is then rejected', () => {
  const e = makeEngine({ numGpuBlocks: 4 });
  e.addRequest(1, range(1, 15), 5);
  step(e, 0);
  let p = step(e, 1);
  assert.deepEqual(p.tokens, [1], 'the 16th token fills the last block');
  p = step(e, 2);
  assert.equal(p.preemptions, 1, 'the 17th token needs a fifth block');
  assert.deepEqual(p.tokens, [], 'the token is not emitted');
  assert.deepEqual(e.waitingRequestIds(), [1]);
  p = step(e, 3);
  assert.deepEqual(p.finished, [[1, FinishReason.rejected]]);
  assert.equal(e.hasWork(), false);
  assert.equal(e.numActiveBlocks, 0);
});

function preemptionScenario(mode: 'lifo' | 'fifo'): { e: Engine; p: Pass } {
  const e = makeEngine({ numGpuBlocks: 6, maxNumBatchedTokens: 16, preemptionMode: mode });
  e.addRequest(1, range(10, 4), 20);
  e.addRequest(2, range(20, 4), 20);
  e.addRequest(3, range(30, 4), 20);
  const p0 = step(e, 0);
  assert.deepEqual(p0.tokens, [1, 2, 3]);
  assert.deepEqual(e.requestBlockIds(1), [0, 3]);
  assert.deepEqual(e.requestBlockIds(2), [1, 4]);
  assert.deepEqual(e.requestBlockIds(3), [2, 5]);
  step(e, 1);
  step(e, 2);
  step(e, 3);
  // Sequences hold 8 tokens; the 9th needs a third block each and the pool is full.
  const p = step(e, 4);
  return { e, p };
}

test('scheduler - lifo preemption evicts the newest running request', () => {
  const { e, p } = preemptionScenario('lifo');
  assert.equal(p.preemptions, 1);
  assert.deepEqual(p.tokens, [1, 2]);
  assert.deepEqual(e.runningRequestIds(), [1, 2]);
  assert.deepEqual(e.waitingRequestIds(), [3], 'victim at the front of the waiting queue');
  assert.deepEqual(e.requestBlockIds(1), [0, 3, 5], 'the victim\'s leaf (promoted this pass) is evicted first');
  assert.deepEqual(e.requestBlockIds(2), [1, 4, 2], 'then its root');
  assert.equal(e.numPreemptionsTotal, 1);
  const q = step(e, 5);
  assert.deepEqual(q.admitted, [], 'victim (8 tokens, 2 blocks) does not fit: no free or evictable block');
  assert.equal(q.preemptions, 0);
});

test('scheduler - fifo preemption evicts the oldest running request, here the current one', () => {
  const { e, p } = preemptionScenario('fifo');
  assert.equal(p.preemptions, 1);
  assert.deepEqual(p.tokens, [2, 3], 'request 1 preempted itself: its token is not emitted');
  assert.deepEqual(e.runningRequestIds(), [2, 3]);
  assert.deepEqual(e.waitingRequestIds(), [1]);
  assert.deepEqual(e.requestBlockIds(2), [1, 4, 3], 'oldest inactive block (request 1\'s leaf) evicted first');
  assert.deepEqual(e.requestBlockIds(3), [2, 5, 0]);
});

test('scheduler - preemption during scheduling gives back the victim\'s budget and retries', () => {
  // fifo: a newer request in the middle of its prefill needs a block while the older, already
  // scheduled decode request holds the last one.
  const e = makeEngine({ numGpuBlocks: 4, maxNumBatchedTokens: 8, preemptionMode: 'fifo' });
  e.addRequest(1, range(10, 4), 20);
  e.addRequest(2, range(20, 12), 1);
  let p = step(e, 0);
  assert.deepEqual(p.admitted, [[1, 0], [2, 0]]);
  assert.deepEqual(p.tokens, [1]);
  assert.deepEqual(e.requestBlockIds(1), [0, 2]);
  assert.deepEqual(e.requestBlockIds(2), [1]);
  p = step(e, 1);
  assert.equal(p.preemptions, 1);
  assert.deepEqual(e.runningRequestIds(), [2]);
  assert.deepEqual(e.waitingRequestIds(), [1]);
  assert.equal(p.scheduled, 7, 'the victim\'s decode token was given back');
  assert.deepEqual(e.requestBlockIds(2), [1, 3, 2], 'retry took the victim\'s freed partial block');
  const r = e.step(2);
  e.checkInvariants();
  assert.equal(r.numPreemptions, 0);
  assert.deepEqual(e.requestBlockIds(2), [], 'request 2 finished');
  assert.deepEqual(Array.from(r.finishedRequestIds.subarray(0, r.numFinished)), [2]);
  p = step(e, 3);
  assert.deepEqual(p.admitted, [[1, 0]], 'victim re-admitted; its evicted block is recomputed');
});

test('scheduler - abort frees a running request\'s blocks leaf first and removes waiting requests', () => {
  const e = makeEngine({ maxNumSeqs: 1 });
  e.addRequest(1, range(1, 8), 10);
  e.addRequest(2, range(50, 4), 10);
  step(e, 0);
  assert.deepEqual(e.requestBlockIds(1), [0, 1, 2]);
  assert.equal(e.abortRequest(2), true, 'waiting request');
  assert.equal(e.numWaiting, 0);
  assert.equal(e.abortRequest(1), true, 'running request');
  e.checkInvariants();
  assert.deepEqual(e.inactiveBlockOrder(), [1, 0]);
  assert.deepEqual(e.freeBlockOrder().slice(0, 1), [2]);
  assert.equal(e.abortRequest(1), false, 'unknown id');
  assert.equal(e.hasWork(), false);
  const p = step(e, 1);
  assert.deepEqual(p.finished, [], 'aborted requests are not reported by step');
});

test('scheduler - max-num-seqs caps the running queue', () => {
  const e = makeEngine({ maxNumSeqs: 2, maxNumBatchedTokens: 64 });
  for (let id = 1; id <= 3; id++) e.addRequest(id, range(id * 10, 2), 3);
  const p = step(e, 0);
  assert.deepEqual(p.admitted.map((a) => a[0]), [1, 2]);
  assert.deepEqual(e.waitingRequestIds(), [3]);
});

test('scheduler - invalid requests throw InvalidRequestError', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 4), 1);
  assert.throws(() => e.addRequest(1, range(1, 4), 1), InvalidRequestError, 'duplicate id');
  assert.throws(() => e.addRequest(2, range(1, 4), 0), InvalidRequestError, 'max tokens < 1');
  assert.throws(() => e.addRequest(3, new Uint32Array(0), 1), InvalidRequestError, 'empty prompt');
  assert.throws(() => e.addRequest(-1, range(1, 4), 1), InvalidRequestError, 'negative id');
});

test('scheduler - generated token ids are deterministic for a seed', () => {
  const run = (seed: number): number[] => {
    const e = makeEngine({ seed });
    e.addRequest(1, range(1, 4), 5);
    const out: number[] = [];
    for (let t = 0; t < 5; t++) {
      const r = e.step(t);
      for (let i = 0; i < r.numTokens; i++) out.push(r.tokenIds[i] as number);
    }
    return out;
  };
  assert.deepEqual(run(3), run(3));
  assert.notDeepEqual(run(3), run(4));
});

test('scheduler - clearAll drops every request and block', () => {
  const e = makeEngine({});
  e.addRequest(1, range(1, 8), 5);
  e.addRequest(2, range(9, 8), 5);
  step(e, 0);
  e.clearAll();
  e.checkInvariants();
  assert.equal(e.hasWork(), false);
  assert.equal(e.numFreeBlocks, 10);
  assert.equal(e.numActiveBlocks + e.numInactiveBlocks, 0);
  assert.equal(e.addRequest(1, range(1, 8), 5), AddOutcome.queued, 'ids can be reused');
});

test('scheduler - outputs longer than the up-front token reserve grow the request buffers', () => {
  const e = makeEngine({ numGpuBlocks: 20000, maxNumBatchedTokens: 64 });
  const maxTokens = 70000;
  // Prompt 4: the reserve (4 + 65536 tokens) ends exactly on a block boundary.
  e.addRequest(1, range(1, 4), maxTokens);
  let emitted = 0;
  let finished: number[] = [];
  for (let t = 0; t < maxTokens + 10 && e.hasWork(); t++) {
    const r = e.step(t);
    emitted += r.numTokens;
    if (r.numFinished > 0) finished = Array.from(r.finishedRequestIds.subarray(0, r.numFinished));
    if (t === 65540 || t === 69990) {
      e.checkInvariants();
      assert.equal(e.requestBlockIds(1).length, Math.ceil((4 + emitted) / 4), 'one block per 4 known tokens');
    }
  }
  assert.equal(emitted, maxTokens);
  assert.deepEqual(finished, [1]);
  e.checkInvariants();
  assert.equal(e.numActiveBlocks, 0);
});
