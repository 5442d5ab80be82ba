/**
 * Mooncake trace JSONL (interfaces.md §6): reader with Dynamo's parsing rules, token synthesis
 * and trace statistics. See src/trace/README.md.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { TraceFormatError } from '../util/errors.js';
import { summarize } from '../report/stats.js';
import { ChildTable } from './child-table.js';
import type { Summary } from '../report/stats.js';

/** Dynamo's --trace-block-size default: each hash id stands for 512 prompt tokens. */
export const DEFAULT_TRACE_BLOCK_SIZE = 512;

export interface TraceRequest {
  /** Arrival, ms from the trace start (raw, not normalized). */
  timestampMs: number;
  /** Prompt tokens as written in the trace (clamped to hashIds.length × block size at synthesis). */
  inputLength: number;
  outputLength: number;
  /** Block ids as u32 (`hash_id as u32`, the value token synthesis repeats). */
  hashIds: Uint32Array;
  sessionId: string | null;
  /** Inter-turn delay for a session's later turns: explicit `delay`/`delay_ms`, else the timestamp gap. */
  delayMs: number | null;
  /** 1-based line number in the file. */
  line: number;
}

type Json = Record<string, unknown>;

function pick(obj: Json, names: readonly string[]): { name: string; value: unknown } | null {
  for (const name of names) {
    if (Object.prototype.hasOwnProperty.call(obj, name) && obj[name] !== null) return { name, value: obj[name] };
  }
  return null;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  return typeof v === 'string' ? `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}` : `${typeof v} ${String(v)}`;
}

/**
 * Parse Mooncake JSONL text. `file` only names the source in error messages.
 * Throws TraceFormatError (file:line: field: problem) on the first unusable line.
 */
export function parseMooncakeTrace(text: string, file: string, state: TraceParseState = newTraceParseState()): TraceRequest[] {
  const out = state.out;
  const lastTurnTs = state.lastTurnTs;
  let lineNo = state.lineNo;
  let pos = 0;
  while (pos <= text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    lineNo++;
    const raw = text.slice(pos, end).trim();
    pos = end + 1;
    if (raw.length === 0) continue;

    let obj: unknown;
    try {
      obj = JSON.parse(raw);
    } catch (err) {
      throw new TraceFormatError(file, lineNo, null, `invalid JSON (${(err as Error).message})`);
    }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      throw new TraceFormatError(file, lineNo, null, `expected a JSON object, got ${describe(obj)}`);
    }
    const rec = obj as Json;
    const fail = (field: string, msg: string): never => {
      throw new TraceFormatError(file, lineNo, field, msg);
    };
    const nonNegNumber = (f: { name: string; value: unknown }): number => {
      if (typeof f.value !== 'number' || !Number.isFinite(f.value)) return fail(f.name, `must be a number, got ${describe(f.value)}`);
      if (f.value < 0) return fail(f.name, `must be ≥ 0, got ${f.value}`);
      return f.value;
    };
    const positiveInt = (f: { name: string; value: unknown }): number => {
      if (typeof f.value !== 'number' || !Number.isInteger(f.value)) return fail(f.name, `must be an integer, got ${describe(f.value)}`);
      if (f.value < 1) return fail(f.name, `must be ≥ 1, got ${f.value}`);
      return f.value;
    };

    // session_id (optional; strings, or integers which are stringified)
    let sessionId: string | null = null;
    const sid = pick(rec, ['session_id']);
    if (sid !== null) {
      if (typeof sid.value === 'string' && sid.value.length > 0) sessionId = sid.value;
      else if (typeof sid.value === 'number' && Number.isInteger(sid.value)) sessionId = String(sid.value);
      else fail('session_id', `must be a non-empty string, got ${describe(sid.value)}`);
    }
    const prevTs = sessionId === null ? undefined : lastTurnTs.get(sessionId);

    // delay / delay_ms (later turns of a session only)
    let delayMs: number | null = null;
    const delay = pick(rec, ['delay', 'delay_ms']);
    if (delay !== null) {
      delayMs = nonNegNumber(delay);
      if (prevTs === undefined) {
        fail(delay.name, sessionId === null ? 'is only allowed on a later turn of a session (no session_id)' : `is not allowed on the first turn of session ${JSON.stringify(sessionId)}`);
      }
    }

    // timestamp / created_time (ms); a later turn with a delay may omit it
    let timestampMs: number;
    const ts = pick(rec, ['timestamp', 'created_time']);
    if (ts !== null) timestampMs = nonNegNumber(ts);
    else if (prevTs !== undefined && delayMs !== null) timestampMs = prevTs + delayMs;
    else timestampMs = fail('timestamp', 'missing (timestamp or created_time, in ms)');
    if (prevTs !== undefined && delayMs === null) delayMs = Math.max(0, timestampMs - prevTs);

    const inLen = pick(rec, ['input_length', 'input_tokens']);
    if (inLen === null) fail('input_length', 'missing (input_length or input_tokens)');
    const inputLength = positiveInt(inLen as { name: string; value: unknown });

    const outLen = pick(rec, ['output_length', 'output_tokens']);
    if (outLen === null) fail('output_length', 'missing (output_length or output_tokens)');
    const outputLength = positiveInt(outLen as { name: string; value: unknown });

    const hid = pick(rec, ['hash_ids']);
    if (hid === null) fail('hash_ids', 'missing');
    const list = (hid as { value: unknown }).value;
    if (!Array.isArray(list)) fail('hash_ids', `must be a list of non-negative integers, got ${describe(list)}`);
    const arr = list as unknown[];
    if (arr.length === 0) fail('hash_ids', 'must not be empty');
    const hashIds = new Uint32Array(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const v = arr[i];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
        fail('hash_ids', `element ${i} must be a non-negative integer, got ${describe(v)}`);
      }
      // u64 ids become u32 tokens the way Dynamo casts them (`as u32` keeps the low 32 bits).
      hashIds[i] = (v as number) % 4294967296;
    }

    if (sessionId !== null) lastTurnTs.set(sessionId, timestampMs);
    out.push({ timestampMs, inputLength, outputLength, hashIds, sessionId, delayMs, line: lineNo });
  }
  state.lineNo = lineNo;
  return out;
}

/** Parser state carried across chunks of one file (readMooncakeTrace parses in pieces). */
export interface TraceParseState {
  out: TraceRequest[];
  /** Per session: timestamp of its latest turn (to infer inter-turn delays). */
  lastTurnTs: Map<string, number>;
  /** Lines consumed so far. */
  lineNo: number;
}

export function newTraceParseState(): TraceParseState {
  return { out: [], lastTurnTs: new Map(), lineNo: 0 };
}

/** Bytes read per chunk: a day-long trace (hundreds of MB) is never one string. */
const READ_CHUNK_BYTES = 16 << 20;

/** Read and parse a Mooncake trace file. Unreadable files throw TraceFormatError (line 0). */
export async function readMooncakeTrace(path: string): Promise<TraceRequest[]> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new TraceFormatError(path, 0, null, `cannot read trace file: ${(err as Error).message}`);
  }
  const state = newTraceParseState();
  try {
    const buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    // Bytes of an unfinished last line carried into the next chunk.
    let carry = Buffer.alloc(0);
    for (;;) {
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, buf.length, null));
      } catch (err) {
        throw new TraceFormatError(path, 0, null, `cannot read trace file: ${(err as Error).message}`);
      }
      if (n === 0) break;
      const chunk = carry.length === 0 ? buf.subarray(0, n) : Buffer.concat([carry, buf.subarray(0, n)]);
      const lastNl = chunk.lastIndexOf(10);
      if (lastNl < 0) {
        carry = Buffer.from(chunk);
        continue;
      }
      // Whole lines only: a UTF-8 sequence never spans a newline byte.
      parseMooncakeTrace(chunk.toString('utf8', 0, lastNl), path, state);
      carry = Buffer.from(chunk.subarray(lastNl + 1));
    }
    if (carry.length > 0) parseMooncakeTrace(carry.toString('utf8'), path, state);
  } finally {
    await fh.close();
  }
  return state.out;
}

/** Prompt length after Dynamo's clamp to len(hash_ids) × traceBlockSize. */
export function effectiveInputLength(req: TraceRequest, traceBlockSize: number): number {
  return Math.min(req.inputLength, req.hashIds.length * traceBlockSize);
}

function checkBlockSize(traceBlockSize: number): void {
  if (!Number.isInteger(traceBlockSize) || traceBlockSize < 1) {
    throw new RangeError(`trace block size must be a positive integer, got ${traceBlockSize}`);
  }
}

/**
 * Prompt tokens of a trace request: each hash id (as u32) repeated traceBlockSize times,
 * truncated to min(inputLength, len(hashIds) × traceBlockSize). Equal leading ids ⇒ equal tokens.
 */
export function synthesizePromptTokens(req: TraceRequest, traceBlockSize: number): Uint32Array {
  checkBlockSize(traceBlockSize);
  const out = new Uint32Array(effectiveInputLength(req, traceBlockSize));
  synthesizePromptTokensInto(req, traceBlockSize, out);
  return out;
}

/**
 * synthesizePromptTokens into out[0..n) without allocating; returns n. Throws RangeError when
 * out is shorter than the prompt.
 */
export function synthesizePromptTokensInto(req: TraceRequest, traceBlockSize: number, out: Uint32Array): number {
  const n = effectiveInputLength(req, traceBlockSize);
  if (out.length < n) throw new RangeError(`output buffer holds ${out.length} tokens, the prompt needs ${n}`);
  const ids = req.hashIds;
  for (let b = 0, pos = 0; pos < n; b++) {
    const end = Math.min(n, pos + traceBlockSize);
    out.fill(ids[b] as number, pos, end);
    pos = end;
  }
  return n;
}

export interface TraceStats {
  requests: number;
  traceBlockSize: number;
  /** Effective (clamped) prompt lengths. */
  input: Summary;
  output: Summary;
  totalInputTokens: number;
  totalOutputTokens: number;
  firstTimestampMs: number;
  lastTimestampMs: number;
  /** lastTimestampMs − firstTimestampMs. */
  spanMs: number;
  /** requests / span (per second); NaN for a zero span. */
  meanArrivalRps: number;
  sessions: number;
  /** Prompt tokens an unbounded prefix cache could serve (see README, "ideal prefix reuse"). */
  idealReusedInputTokens: number;
  idealPrefixReuseRatio: number;
}

/**
 * Trace statistics. The ideal prefix reuse assumes one unbounded cache and requests processed in
 * arrival order (stable by file order for equal timestamps). Block i of a request is identified by
 * its whole id prefix hashIds[0..i] (cumulative-prefix semantics). Walking a request's blocks from
 * the first, block i reuses min(its tokens here, the most tokens any earlier request had in that
 * block); the walk stops at the first block not seen before or not fully covered. Only blocks
 * seen in *earlier* requests count.
 */
export function computeTraceStats(reqs: readonly TraceRequest[], traceBlockSize: number): TraceStats {
  checkBlockSize(traceBlockSize);
  const n = reqs.length;
  const inputs = new Float64Array(n);
  const outputs = new Float64Array(n);
  let totalIn = 0;
  let totalOut = 0;
  let firstTs = Number.POSITIVE_INFINITY;
  let lastTs = Number.NEGATIVE_INFINITY;
  const sessions = new Set<string>();
  let anonymous = 0;
  for (let i = 0; i < n; i++) {
    const r = reqs[i] as TraceRequest;
    const len = effectiveInputLength(r, traceBlockSize);
    inputs[i] = len;
    outputs[i] = r.outputLength;
    totalIn += len;
    totalOut += r.outputLength;
    if (r.timestampMs < firstTs) firstTs = r.timestampMs;
    if (r.timestampMs > lastTs) lastTs = r.timestampMs;
    if (r.sessionId === null) anonymous++;
    else sessions.add(r.sessionId);
  }

  // Prefix trie over block ids; node 0 is the root.
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => (reqs[a] as TraceRequest).timestampMs - (reqs[b] as TraceRequest).timestampMs || a - b);
  const child = new ChildTable();
  const maxTokens: number[] = [0];
  let reused = 0;
  for (const i of order) {
    const r = reqs[i] as TraceRequest;
    const len = inputs[i] as number;
    const nb = Math.ceil(len / traceBlockSize);
    let node = 0;
    let matching = true;
    for (let b = 0; b < nb; b++) {
      const tokens = Math.min(traceBlockSize, len - b * traceBlockSize);
      const id = (r.hashIds[b] as number) | 0;
      let next = child.get(node, id);
      if (next === 0) {
        next = maxTokens.length;
        maxTokens.push(0);
        child.set(node, id, next);
        matching = false;
      } else if (matching) {
        const cached = maxTokens[next] as number;
        reused += Math.min(tokens, cached);
        if (cached < tokens) matching = false;
      }
      if (tokens > (maxTokens[next] as number)) maxTokens[next] = tokens;
      node = next;
    }
  }

  const spanMs = n === 0 ? 0 : lastTs - firstTs;
  return {
    requests: n,
    traceBlockSize,
    input: summarize(inputs),
    output: summarize(outputs),
    totalInputTokens: totalIn,
    totalOutputTokens: totalOut,
    firstTimestampMs: n === 0 ? Number.NaN : firstTs,
    lastTimestampMs: n === 0 ? Number.NaN : lastTs,
    spanMs,
    meanArrivalRps: spanMs > 0 ? (n * 1000) / spanMs : Number.NaN,
    sessions: sessions.size + anonymous,
    idealReusedInputTokens: reused,
    idealPrefixReuseRatio: totalIn > 0 ? reused / totalIn : Number.NaN,
  };
}
