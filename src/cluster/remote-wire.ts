/**
 * The request plane between fleet frontends and `mockfleet worker` processes over NATS: subject
 * names, the micro-service name workers register under, and the binary records on those subjects.
 *
 * Every message body is a run of little-endian u32 words (both ends copy it into an aligned
 * scratch buffer once per message, never per token):
 *
 *   frontend -> worker  `mockfleet.{fleet}.worker.{instance}.requests` (reply-to = the frontend's
 *                        output subject for that worker), records batched per event-loop turn:
 *     SUBMIT [1, id, localRank, maxTokens, flags (1 seeded, 2 stop at end), seed (int32), paramsN,
 *             n, token × n]      ABORT [2, id]
 *   worker -> frontend  `mockfleet.{fleet}.frontend.{frontend}.out.{instance}`, one message per
 *                        drain turn of the worker (every pass of every rank since the last one):
 *     [epoch] then TOKENS [1, id, count, token × count]
 *                  TOKEN_PAIRS [3, n, (id, token) × n]  (one token each for n requests: a pass)
 *                  FINISH [2, id, reason, promptTokens, completionTokens, cachedTokens, errBytes,
 *                          UTF-8 JSON error padded to a word]
 *   worker -> everyone  `mockfleet.{fleet}.load.{instance}` every LOAD_INTERVAL_MS (heartbeat):
 *     [epoch, flags, firstRank, numRanks, floatsPerRank, 0] then numRanks × floatsPerRank f64
 *     (the ranks' shared counters: router load, dashboard), split into several messages for big
 *     workers so none exceeds NATS's default 1 MiB payload.
 *   frontend -> worker  `mockfleet.{fleet}.worker.{instance}.metrics` request (body "openmetrics"
 *                        for OpenMetrics 1.0); reply = the worker's gzipped exposition (fleet view,
 *                        worker_id labels).
 *
 * `epoch` starts at 1 and grows each time the worker loses its NATS connection: messages to it
 * may have been lost, so a frontend fails the requests it sent under an older epoch.
 */
import { InvalidConfigError } from '../util/errors.js';

export const RequestKind = { submit: 1, abort: 2 } as const;
export const SubmitFlag = { seeded: 1, stopAtEnd: 2 } as const;
export const OutputKind = { tokens: 1, finish: 2, tokenPairs: 3 } as const;
export const FinishCode = { length: 0, abort: 1, error: 2 } as const;
export const LoadFlag = { draining: 1, gone: 2 } as const;
export const LOAD_HEADER_WORDS = 6;
export const LOAD_INTERVAL_MS = 250;
/** Bytes of counters per load message (well under NATS's default 1 MiB max_payload). */
export const LOAD_CHUNK_BYTES = 256 * 1024;

/**
 * Largest batch to publish as one message: half the server's max_payload (1 MiB by default),
 * at most 512 KiB, so records appended after the check still fit.
 */
export function maxBatchBytes(nc: { info?: { max_payload: number } | undefined }): number {
  const max = nc.info?.max_payload ?? 1024 * 1024;
  return Math.min(512 * 1024, Math.floor(max / 2));
}

const FLEET_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function checkFleetName(fleet: unknown): string {
  if (typeof fleet !== 'string' || !FLEET_RE.test(fleet)) {
    throw new InvalidConfigError('--fleet', `must be 1-64 letters, digits, '-' or '_', got ${JSON.stringify(fleet)}`);
  }
  return fleet;
}

/** The NATS micro-service name every worker of the fleet registers (`nats micro ls` shows it). */
export function fleetServiceName(fleet: string): string {
  return `mockfleet-${fleet}`;
}

/** The micro service every frontend of the fleet registers (workers check on it). */
export function fleetFrontendServiceName(fleet: string): string {
  return `mockfleet-${fleet}-frontend`;
}

/** The frontend id inside an output subject `mockfleet.{fleet}.frontend.{id}.out.{instance}`. */
export function frontendOfOutput(subject: string): string {
  return subject.split('.')[3] ?? '';
}

export const fleetSubjects = {
  requests: (fleet: string, instance: string): string => `mockfleet.${fleet}.worker.${instance}.requests`,
  metrics: (fleet: string, instance: string): string => `mockfleet.${fleet}.worker.${instance}.metrics`,
  load: (fleet: string, instance: string): string => `mockfleet.${fleet}.load.${instance}`,
  loadAll: (fleet: string): string => `mockfleet.${fleet}.load.*`,
  output: (fleet: string, frontend: string, instance: string): string => `mockfleet.${fleet}.frontend.${frontend}.out.${instance}`,
  outputAll: (fleet: string, frontend: string): string => `mockfleet.${fleet}.frontend.${frontend}.out.*`,
};

/** Last dot-separated token of a subject (the worker instance of load/output subjects). */
export function lastToken(subject: string): string {
  return subject.slice(subject.lastIndexOf('.') + 1);
}

/** A growable buffer of u32 words; write records, then take a copy to publish. */
export class WordWriter {
  private words: Uint32Array;
  private len = 0;

  constructor(initialWords = 1024) {
    this.words = new Uint32Array(initialWords);
  }

  get length(): number {
    return this.len;
  }

  reset(): void {
    this.len = 0;
  }

  private ensure(more: number): void {
    if (this.len + more <= this.words.length) return;
    let cap = this.words.length * 2;
    while (cap < this.len + more) cap *= 2;
    const next = new Uint32Array(cap);
    next.set(this.words.subarray(0, this.len));
    this.words = next;
  }

  u32(v: number): void {
    this.ensure(1);
    this.words[this.len++] = v >>> 0;
  }

  u32x2(a: number, b: number): void {
    this.ensure(2);
    this.words[this.len++] = a >>> 0;
    this.words[this.len++] = b >>> 0;
  }

  /** Add 1 to the word at `index` (a record's running count). */
  bump(index: number): void {
    this.words[index] = (this.words[index] as number) + 1;
  }

  /** Copy src[start, start + count). */
  array(src: Uint32Array, start: number, count: number): void {
    this.ensure(count);
    const w = this.words;
    // A loop, not set(subarray()): no view allocated per call (tokens arrive one at a time).
    for (let i = 0; i < count; i++) w[this.len + i] = src[start + i] as number;
    this.len += count;
  }

  /** Length-prefixed bytes (u32 byte count, then the bytes padded to a word). */
  bytes(b: Uint8Array): void {
    const w = (b.length + 3) >>> 2;
    this.ensure(1 + w);
    this.words[this.len++] = b.length;
    new Uint8Array(this.words.buffer, this.len * 4, w * 4).fill(0).set(b);
    this.len += w;
  }

  /** A copy of the words written so far (publish may keep a reference until it flushes). */
  take(): Uint8Array {
    return new Uint8Array(this.words.buffer.slice(0, this.len * 4));
  }
}

/** Aligned copy of an incoming message, readable as u32 words / f64s without further copies. */
export class WordReader {
  private buf = new ArrayBuffer(64 * 1024);
  u32 = new Uint32Array(this.buf);
  u8 = new Uint8Array(this.buf);
  /** Words in the current message. */
  length = 0;

  load(data: Uint8Array): void {
    if (data.length % 4 !== 0) throw new RangeError(`fleet message of ${data.length} bytes is not a whole number of u32 words`);
    if (data.length > this.buf.byteLength) {
      let cap = this.buf.byteLength * 2;
      while (cap < data.length) cap *= 2;
      this.buf = new ArrayBuffer(cap);
      this.u32 = new Uint32Array(this.buf);
      this.u8 = new Uint8Array(this.buf);
    }
    this.u8.set(data);
    this.length = data.length >>> 2;
  }

  /** f64 view over [wordOffset, wordOffset + 2 × count); wordOffset must be even. */
  f64(wordOffset: number, count: number): Float64Array {
    return new Float64Array(this.buf, wordOffset * 4, count);
  }

  /** Length-prefixed bytes at word offset o as a string; returns [string, next offset]. */
  string(o: number): [string, number] {
    const n = this.u32[o] as number;
    const s = Buffer.from(this.buf, (o + 1) * 4, n).toString('utf8');
    return [s, o + 1 + ((n + 3) >>> 2)];
  }
}
