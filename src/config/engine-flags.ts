/**
 * Engine flags shared by `serve` and `replay --offline`, spelled as in vLLM / Dynamo's mocker.
 * Defaults are left to normalizeEngineArgs so that a config file or env var can still fill them.
 */
import type { Options } from 'yargs';

export const ENGINE_FLAG_OPTIONS = {
  'num-gpu-blocks': {
    type: 'number',
    alias: 'num-gpu-blocks-override',
    describe: 'KV cache blocks per rank (default 16384)',
    group: 'Engine:',
  },
  'block-size': { type: 'number', describe: 'Tokens per KV block (default 64)', group: 'Engine:' },
  'max-num-seqs': { type: 'number', describe: 'Max running requests per rank (default 256)', group: 'Engine:' },
  'max-num-batched-tokens': {
    type: 'number',
    describe: 'Token budget per forward pass (default 8192)',
    group: 'Engine:',
  },
  'enable-prefix-caching': {
    type: 'boolean',
    describe: 'Reuse cached KV blocks across requests (default on; --no-enable-prefix-caching)',
    group: 'Engine:',
  },
  'enable-chunked-prefill': {
    type: 'boolean',
    describe: 'Split long prompts across passes (default on; --no-enable-chunked-prefill)',
    group: 'Engine:',
  },
  'preemption-mode': {
    type: 'string',
    choices: ['lifo', 'fifo'],
    describe: 'Which running request is preempted when KV runs out (default lifo)',
    group: 'Engine:',
  },
  'speedup-ratio': {
    type: 'number',
    describe: 'Divide modeled GPU time by this; 0 = never sleep (default 1)',
    group: 'Engine:',
  },
  'decode-speedup-ratio': {
    type: 'number',
    describe: 'Extra divisor for decode time only (default 1)',
    group: 'Engine:',
  },
  'planner-profile-data': {
    type: 'string',
    describe: 'Perf profile (Dynamo planner NPZ or JSON) instead of the polynomial model',
    group: 'Engine:',
  },
  seed: { type: 'number', describe: 'Seed for token ids, worker ids and random choices (default 0)' },
} as const satisfies Record<string, Options>;

export interface EngineFlagValues {
  numGpuBlocks?: number | undefined;
  blockSize?: number | undefined;
  maxNumSeqs?: number | undefined;
  maxNumBatchedTokens?: number | undefined;
  enablePrefixCaching?: boolean | undefined;
  enableChunkedPrefill?: boolean | undefined;
  preemptionMode?: string | undefined;
  speedupRatio?: number | undefined;
  decodeSpeedupRatio?: number | undefined;
  plannerProfileData?: string | undefined;
  seed?: number | undefined;
}
