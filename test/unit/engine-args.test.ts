import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_ENGINE_ARGS, Engine, createPolynomialPerfModel, normalizeEngineArgs } from '../../src/engine/engine.js';
import type { EngineArgs } from '../../src/engine/types.js';
import { InvalidConfigError } from '../../src/util/errors.js';

test('engine args - defaults match the Dynamo vLLM mocker', () => {
  const a = normalizeEngineArgs();
  assert.deepEqual(a, DEFAULT_ENGINE_ARGS);
  assert.equal(a.numGpuBlocks, 16384);
  assert.equal(a.blockSize, 64);
  assert.equal(a.maxNumSeqs, 256);
  assert.equal(a.maxNumBatchedTokens, 8192);
  assert.equal(a.enablePrefixCaching, true);
  assert.equal(a.enableChunkedPrefill, true);
  assert.equal(a.preemptionMode, 'lifo');
  assert.ok(Object.isFrozen(a));
});

test('engine args - given fields override defaults', () => {
  const a = normalizeEngineArgs({ blockSize: 16, preemptionMode: 'fifo', enablePrefixCaching: false });
  assert.equal(a.blockSize, 16);
  assert.equal(a.preemptionMode, 'fifo');
  assert.equal(a.enablePrefixCaching, false);
  assert.equal(a.numGpuBlocks, 16384);
});

const bad: Array<[string, Record<string, unknown>]> = [
  ['num-gpu-blocks', { numGpuBlocks: 0 }],
  ['num-gpu-blocks', { numGpuBlocks: 1.5 }],
  ['block-size', { blockSize: 0 }],
  ['block-size', { blockSize: '64' }],
  ['max-num-seqs', { maxNumSeqs: -1 }],
  ['max-num-batched-tokens', { maxNumBatchedTokens: Number.NaN }],
  ['enable-prefix-caching', { enablePrefixCaching: 'yes' }],
  ['enable-chunked-prefill', { enableChunkedPrefill: 1 }],
  ['preemption-mode', { preemptionMode: 'random' }],
  ['seed', { seed: 0.5 }],
  ['num-gpu-blocks', { numGpuBlocks: 1 << 20, blockSize: 4096 }],
  ['watermark', { watermark: 0.01 }],
];

for (const [field, input] of bad) {
  test(`engine args - ${JSON.stringify(input)} is rejected naming ${field}`, () => {
    assert.throws(
      () => normalizeEngineArgs(input as Partial<EngineArgs>),
      (err: unknown) => err instanceof InvalidConfigError && err.field === field && err.message.startsWith(`${field}: `),
    );
  });
}

test('engine args - the Engine constructor validates its args too', () => {
  assert.throws(
    () => new Engine({ ...DEFAULT_ENGINE_ARGS, blockSize: 0 }, createPolynomialPerfModel()),
    (err: unknown) => err instanceof InvalidConfigError && err.field === 'block-size',
  );
});
