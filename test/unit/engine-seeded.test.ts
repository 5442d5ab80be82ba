/**
 * Seeded requests: token k of a request with seed s is generatedTokenId(vocabulary, s, k) however
 * the passes are composed (alone, in a crowd, after a preemption), and the stored decode blocks
 * carry those ids.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import { generatedTokenId } from '../../src/engine/generated-tokens.js';
import { FinishReason } from '../../src/engine/types.js';

const VOCAB = Uint32Array.from([7001, 7002, 7003, 7004, 7005, 7006, 7007]);

function run(engine: Engine, until: (t: number) => boolean): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (let t = 0; t < 10_000 && !until(t); t++) {
    const r = engine.step(t);
    for (let i = 0; i < r.numTokens; i++) {
      const id = r.tokenRequestIds[i] as number;
      if (!out.has(id)) out.set(id, []);
      (out.get(id) as number[]).push(r.tokenIds[i] as number);
    }
    engine.checkInvariants();
    if (!engine.hasWork()) break;
  }
  return out;
}

test('engine seeded - token k depends only on the seed and k, whatever shares the pass', () => {
  const expected = Array.from({ length: 40 }, (_, k) => generatedTokenId(VOCAB, 12345, k));
  const alone = new Engine(normalizeEngineArgs({ blockSize: 4, numGpuBlocks: 256, seed: 1 }), createPolynomialPerfModel(), { generatedVocabulary: VOCAB });
  alone.addRequest(1, Uint32Array.from([1, 2, 3, 4, 5]), 40, 12345);
  assert.deepEqual(run(alone, () => false).get(1), expected);

  const crowd = new Engine(normalizeEngineArgs({ blockSize: 4, numGpuBlocks: 256, seed: 99 }), createPolynomialPerfModel(), { generatedVocabulary: VOCAB });
  crowd.addRequest(5, Uint32Array.from([9, 9, 9]), 30);
  crowd.addRequest(6, Uint32Array.from([8, 8, 8, 8, 8, 8, 8]), 25, 777);
  crowd.addRequest(7, Uint32Array.from([1, 2, 3, 4, 5]), 40, 12345);
  const got = run(crowd, () => false);
  assert.deepEqual(got.get(7), expected, 'same seed, same ids on another engine with other traffic');
  assert.ok((got.get(5) as number[]).every((id) => id >= 1000 && id < 2000), 'unseeded requests keep the engine draw');
  assert.ok((got.get(6) as number[]).every((id) => VOCAB.includes(id)));
});

test('engine seeded - a preempted seeded request continues its own sequence', () => {
  // 6 blocks of 4 tokens: three requests growing to 12 tokens each cannot all fit; preemptions happen.
  const engine = new Engine(normalizeEngineArgs({ blockSize: 4, numGpuBlocks: 6, maxNumBatchedTokens: 64, seed: 3 }), createPolynomialPerfModel(), { generatedVocabulary: VOCAB });
  for (const id of [1, 2, 3]) engine.addRequest(id, Uint32Array.from([id, id, id, id]), 8, 100 + id);
  const finished: number[] = [];
  const tokens = new Map<number, number[]>();
  for (let t = 0; t < 1000 && engine.hasWork(); t++) {
    const r = engine.step(t);
    for (let i = 0; i < r.numTokens; i++) {
      const id = r.tokenRequestIds[i] as number;
      tokens.set(id, [...(tokens.get(id) ?? []), r.tokenIds[i] as number]);
    }
    for (let i = 0; i < r.numFinished; i++) if (r.finishedReasons[i] === FinishReason.length) finished.push(r.finishedRequestIds[i] as number);
    engine.checkInvariants();
  }
  assert.ok(engine.numPreemptionsTotal > 0, 'the workload preempts');
  assert.deepEqual(finished.sort(), [1, 2, 3]);
  for (const id of [1, 2, 3]) {
    assert.deepEqual(tokens.get(id), Array.from({ length: 8 }, (_, k) => generatedTokenId(VOCAB, 100 + id, k)), `request ${id}`);
  }
});
