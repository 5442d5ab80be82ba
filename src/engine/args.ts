import { InvalidConfigError } from '../util/errors.js';
import type { EngineArgs, PreemptionMode } from './types.js';

/** Defaults of one vLLM-flavoured rank (Dynamo `MockEngineArgs`, engine-spec §3.1). */
export const DEFAULT_ENGINE_ARGS: Readonly<EngineArgs> = Object.freeze({
  numGpuBlocks: 16384,
  blockSize: 64,
  maxNumSeqs: 256,
  maxNumBatchedTokens: 8192,
  enablePrefixCaching: true,
  enableChunkedPrefill: true,
  preemptionMode: 'lifo' as PreemptionMode,
  seed: 0,
});

/** Largest KV pool one rank may have; bounds the typed arrays sized by it (≈ 50 bytes per block). */
export const MAX_NUM_GPU_BLOCKS = 1 << 24;
const MAX_INT32 = 0x7fffffff;

/** Field name as users type it (CLI flag without the dashes), used in every error message. */
const FIELD_NAMES: Readonly<Record<keyof EngineArgs, string>> = {
  numGpuBlocks: 'num-gpu-blocks',
  blockSize: 'block-size',
  maxNumSeqs: 'max-num-seqs',
  maxNumBatchedTokens: 'max-num-batched-tokens',
  enablePrefixCaching: 'enable-prefix-caching',
  enableChunkedPrefill: 'enable-chunked-prefill',
  preemptionMode: 'preemption-mode',
  seed: 'seed',
};

function intField(input: Partial<EngineArgs>, key: keyof EngineArgs, min: number, max: number): number {
  const v = input[key] ?? DEFAULT_ENGINE_ARGS[key];
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new InvalidConfigError(FIELD_NAMES[key], `must be an integer, got ${String(v)}`);
  }
  if (v < min || v > max) {
    throw new InvalidConfigError(FIELD_NAMES[key], `must be between ${min} and ${max}, got ${v}`);
  }
  return v;
}

function boolField(input: Partial<EngineArgs>, key: keyof EngineArgs): boolean {
  const v = input[key] ?? DEFAULT_ENGINE_ARGS[key];
  if (typeof v !== 'boolean') throw new InvalidConfigError(FIELD_NAMES[key], `must be true or false, got ${String(v)}`);
  return v;
}

/**
 * Fill defaults, validate every field and return a frozen EngineArgs. Unknown keys are rejected
 * (Dynamo's `deny_unknown_fields`). Throws InvalidConfigError naming the field (e.g. "block-size").
 */
export function normalizeEngineArgs(input: Partial<EngineArgs> = {}): Readonly<EngineArgs> {
  if (typeof input !== 'object' || input === null) {
    throw new InvalidConfigError('engine-args', 'must be an object');
  }
  for (const key of Object.keys(input)) {
    if (!Object.prototype.hasOwnProperty.call(FIELD_NAMES, key)) {
      throw new InvalidConfigError(key, 'unknown engine argument');
    }
  }
  const mode = input.preemptionMode ?? DEFAULT_ENGINE_ARGS.preemptionMode;
  if (mode !== 'lifo' && mode !== 'fifo') {
    throw new InvalidConfigError(FIELD_NAMES.preemptionMode, `must be "lifo" or "fifo", got ${String(mode)}`);
  }
  const args: EngineArgs = {
    numGpuBlocks: intField(input, 'numGpuBlocks', 1, MAX_NUM_GPU_BLOCKS),
    blockSize: intField(input, 'blockSize', 1, 1 << 16),
    maxNumSeqs: intField(input, 'maxNumSeqs', 1, 1 << 20),
    maxNumBatchedTokens: intField(input, 'maxNumBatchedTokens', 1, MAX_INT32),
    enablePrefixCaching: boolField(input, 'enablePrefixCaching'),
    enableChunkedPrefill: boolField(input, 'enableChunkedPrefill'),
    preemptionMode: mode,
    seed: intField(input, 'seed', -MAX_INT32 - 1, 0xffffffff),
  };
  // Token positions live in Int32Arrays; a sequence never outgrows the pool, so the pool bounds them.
  if (args.numGpuBlocks * args.blockSize > MAX_INT32) {
    throw new InvalidConfigError(FIELD_NAMES.numGpuBlocks, `num-gpu-blocks × block-size must be at most ${MAX_INT32} tokens`);
  }
  return Object.freeze(args);
}
