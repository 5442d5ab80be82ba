/**
 * Mooncake trace JSONL (interfaces.md §6): reader with Dynamo's parsing rules, token synthesis
 * and trace statistics. See src/trace/README.md.
 */
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { TraceFormatError } from '../util/errors.js';
import { summarize } from '../report/stats.js';
import { ChildTable } from './child-table.js';
import { FastKey, FastLine, FastValue, scanLine } from './fast-line.js';
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

const hasOwn = Object.prototype.hasOwnProperty;

/** The first of `names` present on obj with a non-null value, or null. */
function pick(obj: Json, a: string, b?: string): string | null {
  if (hasOwn.call(obj, a) && obj[a] !== null) return a;
  if (b !== undefined && hasOwn.call(obj, b) && obj[b] !== null) return b;
  return null;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  return typeof v === 'string' ? `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}` : `${typeof v} ${String(v)}`;
}

// The field checks are plain functions (no closure per line): a day-long trace has a million lines.
function nonNegNumber(file: string, lineNo: number, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new TraceFormatError(file, lineNo, name, `must be a number, got ${describe(value)}`);
  if (value < 0) throw new TraceFormatError(file, lineNo, name, `must be ≥ 0, got ${value}`);
  return value;
}

function positiveInt(file: string, lineNo: number, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TraceFormatError(file, lineNo, name, `must be an integer, got ${describe(value)}`);
  if (value < 1) throw new TraceFormatError(file, lineNo, name, `must be ≥ 1, got ${value}`);
  return value;
}

/**
 * Parse Mooncake JSONL text. `file` only names the source in error messages.
 * Throws TraceFormatError (file:line: field: problem) on the first unusable line.
 */
export function parseMooncakeTrace(text: string, file: string, state: TraceParseState = newTraceParseState()): TraceRequest[] {
  let lineNo = state.lineNo;
  let pos = 0;
  while (pos <= text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    lineNo++;
    parseTraceLine(text.slice(pos, end), file, lineNo, state);
    pos = end + 1;
  }
  state.lineNo = lineNo;
  return state.out;
}

/** One line with JSON.parse and every check (the definition of what a line may hold); blank lines are skipped. */
function parseTraceLine(line: string, file: string, lineNo: number, state: TraceParseState): void {
  const raw = line.trim();
  if (raw.length === 0) return;
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

  // session_id (optional; strings, or integers which are stringified)
  let sessionId: string | null = null;
  if (pick(rec, 'session_id') !== null) {
    const v = rec.session_id;
    if (typeof v === 'string' && v.length > 0) sessionId = v;
    else if (typeof v === 'number' && Number.isInteger(v)) sessionId = String(v);
    else throw new TraceFormatError(file, lineNo, 'session_id', `must be a non-empty string, got ${describe(v)}`);
  }
  const prevTs = sessionId === null ? undefined : state.lastTurnTs.get(sessionId);

  // delay / delay_ms (later turns of a session only)
  let delayMs: number | null = null;
  const delayName = pick(rec, 'delay', 'delay_ms');
  if (delayName !== null) {
    delayMs = nonNegNumber(file, lineNo, delayName, rec[delayName]);
    if (prevTs === undefined) {
      throw new TraceFormatError(file, lineNo, delayName, sessionId === null ? 'is only allowed on a later turn of a session (no session_id)' : `is not allowed on the first turn of session ${JSON.stringify(sessionId)}`);
    }
  }

  // timestamp / created_time (ms); a later turn with a delay may omit it
  let timestampMs: number;
  const tsName = pick(rec, 'timestamp', 'created_time');
  if (tsName !== null) timestampMs = nonNegNumber(file, lineNo, tsName, rec[tsName]);
  else if (prevTs !== undefined && delayMs !== null) timestampMs = prevTs + delayMs;
  else throw new TraceFormatError(file, lineNo, 'timestamp', 'missing (timestamp or created_time, in ms)');
  if (prevTs !== undefined && delayMs === null) delayMs = Math.max(0, timestampMs - prevTs);

  const inName = pick(rec, 'input_length', 'input_tokens');
  if (inName === null) throw new TraceFormatError(file, lineNo, 'input_length', 'missing (input_length or input_tokens)');
  const inputLength = positiveInt(file, lineNo, inName, rec[inName]);

  const outName = pick(rec, 'output_length', 'output_tokens');
  if (outName === null) throw new TraceFormatError(file, lineNo, 'output_length', 'missing (output_length or output_tokens)');
  const outputLength = positiveInt(file, lineNo, outName, rec[outName]);

  if (pick(rec, 'hash_ids') === null) throw new TraceFormatError(file, lineNo, 'hash_ids', 'missing');
  const list = rec.hash_ids;
  if (!Array.isArray(list)) throw new TraceFormatError(file, lineNo, 'hash_ids', `must be a list of non-negative integers, got ${describe(list)}`);
  const arr = list as unknown[];
  if (arr.length === 0) throw new TraceFormatError(file, lineNo, 'hash_ids', 'must not be empty');
  const hashIds = new Uint32Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
      throw new TraceFormatError(file, lineNo, 'hash_ids', `element ${i} must be a non-negative integer, got ${describe(v)}`);
    }
    // u64 ids become u32 tokens the way Dynamo casts them (`as u32` keeps the low 32 bits).
    hashIds[i] = v % 4294967296;
  }

  if (sessionId !== null) state.lastTurnTs.set(sessionId, timestampMs);
  state.out.push({ timestampMs, inputLength, outputLength, hashIds, sessionId, delayMs, line: lineNo });
}

/**
 * A line the byte scanner read (fast-line.ts): append its request when every check passes and
 * return true; return false, appending nothing, for anything parseTraceLine must judge (it then
 * produces the same request, or the error).
 */
/** Like pick(): the field is there and not null. */
function present(kind: Uint8Array, k: number): boolean {
  const v = kind[k];
  return v !== FastValue.absent && v !== FastValue.null;
}

function acceptFastLine(f: FastLine, lineNo: number, state: TraceParseState, slab: HashIdSlab): boolean {
  const kind = f.kind;
  let sessionId: string | null = null;
  if (present(kind, FastKey.sessionId)) {
    if (kind[FastKey.sessionId] === FastValue.string && f.sessionId.length > 0) sessionId = f.sessionId;
    else if (kind[FastKey.sessionId] === FastValue.number) sessionId = String(f.num[FastKey.sessionId]);
    else return false;
  }
  const prevTs = sessionId === null ? undefined : state.lastTurnTs.get(sessionId);
  let delayMs: number | null = null;
  const delayKey = present(kind, FastKey.delay) ? FastKey.delay : present(kind, FastKey.delayMs) ? FastKey.delayMs : -1;
  if (delayKey >= 0) {
    if (kind[delayKey] !== FastValue.number || prevTs === undefined) return false;
    delayMs = f.num[delayKey] as number;
  }
  let timestampMs: number;
  const tsKey = present(kind, FastKey.timestamp) ? FastKey.timestamp : present(kind, FastKey.createdTime) ? FastKey.createdTime : -1;
  if (tsKey >= 0) {
    if (kind[tsKey] !== FastValue.number) return false;
    timestampMs = f.num[tsKey] as number;
  } else if (prevTs !== undefined && delayMs !== null) timestampMs = prevTs + delayMs;
  else return false;
  if (prevTs !== undefined && delayMs === null) delayMs = Math.max(0, timestampMs - prevTs);
  const inKey = present(kind, FastKey.inputLength) ? FastKey.inputLength : present(kind, FastKey.inputTokens) ? FastKey.inputTokens : -1;
  if (inKey < 0 || kind[inKey] !== FastValue.number || (f.num[inKey] as number) < 1) return false;
  const outKey = present(kind, FastKey.outputLength) ? FastKey.outputLength : present(kind, FastKey.outputTokens) ? FastKey.outputTokens : -1;
  if (outKey < 0 || kind[outKey] !== FastValue.number || (f.num[outKey] as number) < 1) return false;
  if (kind[FastKey.hashIds] !== FastValue.list || f.hashCount === 0) return false;
  if (sessionId !== null) state.lastTurnTs.set(sessionId, timestampMs);
  state.out.push({
    timestampMs,
    inputLength: f.num[inKey] as number,
    outputLength: f.num[outKey] as number,
    hashIds: slab.take(f.hashIds, f.hashCount),
    sessionId,
    delayMs,
    line: lineNo,
  });
  return true;
}

/**
 * Hash-id lists of many requests share 4 MiB buffers (views into a slab): a million small typed
 * arrays, each with its own backing store, cost more garbage-collector time than the parsing.
 */
class HashIdSlab {
  private slab = new Uint32Array(0);
  private used = 0;
  take(src: Uint32Array, n: number): Uint32Array {
    if (this.used + n > this.slab.length) {
      this.slab = new Uint32Array(Math.max(n, 1 << 20));
      this.used = 0;
    }
    const view = this.slab.subarray(this.used, this.used + n);
    view.set(src.subarray(0, n));
    this.used += n;
    return view;
  }
}

/**
 * Parse whole lines of UTF-8 bytes: the byte scanner for lines of the usual shape, parseTraceLine
 * for the rest. Same result as parseMooncakeTrace on the decoded text.
 */
function parseTraceBytes(buf: Buffer, file: string, state: TraceParseState, scratch: FastLine, slab: HashIdSlab): void {
  let lineNo = state.lineNo;
  let pos = 0;
  const n = buf.length;
  while (pos <= n) {
    let end = buf.indexOf(10, pos);
    if (end < 0) end = n;
    lineNo++;
    if (!(scanLine(buf, pos, end, scratch) && acceptFastLine(scratch, lineNo, state, slab))) {
      parseTraceLine(buf.toString('utf8', pos, end), file, lineNo, state);
    }
    pos = end + 1;
  }
  state.lineNo = lineNo;
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
    let buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    const scratch = new FastLine();
    const slab = new HashIdSlab();
    // buf[0, carry) holds an unfinished last line; the next read appends after it (no copy of the
    // chunk: fresh 16 MiB buffers per chunk cost more in page faults than the parse).
    let carry = 0;
    for (;;) {
      if (carry === buf.length) {
        const grown = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(grown, 0, 0, carry);
        buf = grown;
      }
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, carry, buf.length - carry, null));
      } catch (err) {
        throw new TraceFormatError(path, 0, null, `cannot read trace file: ${(err as Error).message}`);
      }
      if (n === 0) break;
      const filled = carry + n;
      const lastNl = buf.lastIndexOf(10, filled - 1);
      if (lastNl < carry) {
        carry = filled;
        continue;
      }
      // Whole lines only: a UTF-8 sequence never spans a newline byte.
      parseTraceBytes(buf.subarray(0, lastNl), path, state, scratch, slab);
      buf.copy(buf, 0, lastNl + 1, filled);
      carry = filled - lastNl - 1;
    }
    if (carry > 0) parseTraceBytes(buf.subarray(0, carry), path, state, scratch, slab);
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
 * synthesizePromptTokens into out[from..n) without allocating (out[0..from) is left as it is);
 * returns n. Throws RangeError when out is shorter than the prompt.
 */
export function synthesizePromptTokensInto(req: TraceRequest, traceBlockSize: number, out: Uint32Array, from = 0): number {
  const n = effectiveInputLength(req, traceBlockSize);
  if (out.length < n) throw new RangeError(`output buffer holds ${out.length} tokens, the prompt needs ${n}`);
  const ids = req.hashIds;
  for (let b = Math.floor(from / traceBlockSize), pos = from; pos < n; b++) {
    const end = Math.min(n, (b + 1) * traceBlockSize);
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
