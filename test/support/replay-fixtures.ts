/** Shared inputs of the offline-replay tests: the conversation trace and a base option set. */
import { fileURLToPath } from 'node:url';
import type { OfflineReplayOptions } from '../../src/replay/offline.js';
import { readMooncakeTrace } from '../../src/trace/mooncake.js';
import type { TraceRequest } from '../../src/trace/mooncake.js';

const CONVERSATION_TRACE = fileURLToPath(new URL('../../../data/mooncake/conversation_trace.jsonl', import.meta.url));

/** The first n requests of the in-repo conversation trace. */
export async function conversationSlice(n: number): Promise<TraceRequest[]> {
  return (await readMooncakeTrace(CONVERSATION_TRACE)).slice(0, n);
}

/** 4 workers, kv router, default engine, 512-token trace blocks, no speedups, every ITL sample kept. */
export const REPLAY_BASE: OfflineReplayOptions = {
  numWorkers: 4,
  dataParallelSize: 1,
  router: 'kv',
  traceBlockSize: 512,
  arrivalSpeedupRatio: 1,
  speedupRatio: 1,
  decodeSpeedupRatio: 1,
  engineArgs: {},
  seed: 0,
  keepItlSamples: true,
};

/** The bytes of a typed array (bit-for-bit comparisons). */
export function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}
