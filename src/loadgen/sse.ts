/**
 * Incremental parser for OpenAI-style SSE completion streams, built for counting at line rate.
 *
 * Each network chunk is scanned once: event boundaries ("\n\n", or "\r\n\r\n" when the stream uses
 * CRLF) are found with the single-byte indexOf (memchr); only the unterminated tail is kept, copied
 * into a reused scratch buffer. Content events are recognised without JSON.parse by one JS pass over
 * the event looking for the content key ("text" for /v1/completions, "content" for chat) with a
 * non-empty string value, and for a "usage" object. JSON.parse runs only on the first event of a
 * stream (validation / error detection), on error-looking events and on the usage event.
 *
 * Every content event counts as one output token (usage.completion_tokens replaces the count when
 * the server sends usage). All events of one network chunk share the chunk's arrival time.
 */

export type SseApi = 'completions' | 'chat';

export interface SseUsage {
  promptTokens: number;
  completionTokens: number;
  /** usage.prompt_tokens_details.cached_tokens; NaN when the server does not report it. */
  cachedTokens: number;
}

const NL = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const COLON = 0x3a;
const SPACE = 0x20;
const TAB = 0x09;
const LBRACE = 0x7b;
const LBRACKET = 0x5b;

const DATA = Buffer.from('data:');
const LF_DATA = Buffer.from('\ndata:');
const USAGE_KEY = Buffer.from('"usage"');
const DONE = Buffer.from('[DONE]');
const ERROR_PREFIX_A = Buffer.from('{"error"');
const ERROR_PREFIX_B = Buffer.from('{"object":"error"');
const DELIM_LF = Buffer.from('\n\n');
const DELIM_CRLF = Buffer.from('\r\n\r\n');
/** Payload growth beyond the shortest content payload that still takes the fast path. */
const FAST_PATH_SLACK_BYTES = 48;
const INITIAL_TAIL_BYTES = 16 * 1024;
const INITIAL_GAPS = 1024;

export class SseStreamParser {
  private readonly contentKey: Buffer;
  /** Offset of the content key from the payload start in the last content event, or -1. */
  private keyOffset: number;
  /** Shortest payload that held content so far (fast-path guard, see classify). */
  private minContentLen: number;
  private delim: Buffer | null;
  private tail: Buffer;
  private tailLen: number;

  /** Number of data events seen (content or not), excluding [DONE]. */
  numEvents: number;
  /** Content events (non-empty text/content value). */
  numContent: number;
  firstContentMs: number;
  secondContentMs: number;
  lastContentMs: number;
  /** Gaps between consecutive content events, ms; valid in [0, numGaps). */
  gaps: Float64Array;
  numGaps: number;
  /** `data: [DONE]` seen. */
  done: boolean;
  usage: SseUsage | null;
  /** Set when the stream carried an error object or was not valid SSE JSON; the request failed. */
  streamError: string | null;

  constructor(api: SseApi) {
    this.contentKey = Buffer.from(api === 'chat' ? '"content"' : '"text"');
    this.keyOffset = -1;
    this.minContentLen = Infinity;
    this.delim = null;
    this.tail = Buffer.allocUnsafe(INITIAL_TAIL_BYTES);
    this.tailLen = 0;
    this.numEvents = 0;
    this.numContent = 0;
    this.firstContentMs = Number.NaN;
    this.secondContentMs = Number.NaN;
    this.lastContentMs = Number.NaN;
    this.gaps = new Float64Array(INITIAL_GAPS);
    this.numGaps = 0;
    this.done = false;
    this.usage = null;
    this.streamError = null;
  }

  /** Ready for a new stream; buffers are kept. */
  reset(): void {
    this.keyOffset = -1;
    this.minContentLen = Infinity;
    this.delim = null;
    this.tailLen = 0;
    this.numEvents = 0;
    this.numContent = 0;
    this.firstContentMs = Number.NaN;
    this.secondContentMs = Number.NaN;
    this.lastContentMs = Number.NaN;
    this.numGaps = 0;
    this.done = false;
    this.usage = null;
    this.streamError = null;
  }

  /** Bytes held from an unterminated event (0 at a clean end of stream). */
  get pendingBytes(): number {
    return this.tailLen;
  }

  /** Feed one network chunk received at `nowMs`. */
  push(chunk: Buffer, nowMs: number): void {
    const n = chunk.length;
    if (n === 0) return;
    let delim = this.delim;
    if (delim === null) {
      // Decide LF vs CRLF from the first line ending; until one arrives, just accumulate.
      this.appendTail(chunk, 0, n);
      const nl = this.tail.indexOf(NL);
      if (nl < 0 || nl >= this.tailLen) return;
      delim = this.tail[nl - 1] === CR && nl > 0 ? DELIM_CRLF : DELIM_LF;
      this.delim = delim;
      // Re-run the accumulated bytes in place (once per stream): the unterminated rest is moved
      // to the front of the same buffer, which Buffer.copy allows for overlapping regions.
      const held = this.tail.subarray(0, this.tailLen);
      this.tailLen = 0;
      this.scanFrom(held, 0, nowMs, delim);
      return;
    }
    let pos = 0;
    const dl = delim.length;
    if (this.tailLen > 0) {
      // The delimiter may straddle the tail end and the chunk start.
      let joined = -1;
      for (let k = Math.min(dl - 1, this.tailLen); k >= 1 && joined < 0; k--) {
        if (this.tailEndsWith(delim, k) && startsWith(chunk, delim, k)) joined = k;
      }
      if (joined > 0) {
        this.tailLen -= joined;
        pos = dl - joined;
      } else {
        const idx = chunk.indexOf(delim);
        if (idx < 0) {
          this.appendTail(chunk, 0, n);
          return;
        }
        this.appendTail(chunk, 0, idx);
        pos = idx + dl;
      }
      const len = this.tailLen;
      this.tailLen = 0;
          this.onEvent(this.tail, 0, len, nowMs);
        }
    this.scanFrom(chunk, pos, nowMs, delim);
  }

  private scanFrom(chunk: Buffer, start: number, nowMs: number, delim: Buffer): void {
    // Boundaries are found with the single-byte (memchr) form of indexOf: data lines carry JSON,
    // which has no raw newlines, so nearly every NL found ends an event.
    const crlf = delim.length === 4;
    const len = chunk.length;
    let evStart = start;
    let search = start;
    for (;;) {
      const nl = chunk.indexOf(NL, search);
      if (nl < 0) break;
      let end: number;
      let next: number;
      if (crlf) {
        if (nl + 2 >= len) break;
        if (nl >= 1 && chunk[nl - 1] === CR && chunk[nl + 1] === CR && chunk[nl + 2] === NL) {
          end = nl - 1;
          next = nl + 3;
        } else {
          search = nl + 1;
          continue;
        }
      } else {
        if (nl + 1 >= len) break;
        if (chunk[nl + 1] === NL) {
          end = nl;
          next = nl + 2;
        } else {
          search = nl + 1;
          continue;
        }
      }
      if (end > evStart) this.onEvent(chunk, evStart, end, nowMs);
      evStart = search = next;
    }
    if (evStart < len) this.appendTail(chunk, evStart, len);
  }

  private tailEndsWith(delim: Buffer, k: number): boolean {
    const t = this.tail;
    const base = this.tailLen - k;
    for (let i = 0; i < k; i++) if (t[base + i] !== delim[i]) return false;
    return true;
  }

  private appendTail(src: Buffer, from: number, to: number): void {
    const add = to - from;
    if (add <= 0) return;
    const need = this.tailLen + add;
    if (need > this.tail.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.tail.length * 2));
      this.tail.copy(grown, 0, 0, this.tailLen);
      this.tail = grown;
    }
    src.copy(this.tail, this.tailLen, from, to);
    this.tailLen = need;
  }

  /** One complete event in buf[s, e). */
  private onEvent(buf: Buffer, s: number, e: number, nowMs: number): void {
    let p: number;
    if (startsWithAt(buf, s, e, DATA)) {
      p = s + DATA.length;
    } else {
      // Comments (": ping") or "event:"/"id:" lines before the data line.
      const at = buf.indexOf(LF_DATA, s);
      if (at < 0 || at >= e) return;
      p = at + LF_DATA.length;
    }
    if (p < e && buf[p] === SPACE) p++;
    // Multi-line data fields end at the event end; OpenAI servers send one line.
    if (buf[p] === LBRACKET && e - p >= DONE.length && startsWithAt(buf, p, e, DONE)) {
      this.done = true;
      return;
    }
    this.numEvents++;
    if (this.numEvents === 1 || startsWithAt(buf, p, e, ERROR_PREFIX_A) || startsWithAt(buf, p, e, ERROR_PREFIX_B)) {
      this.inspectJson(buf, p, e);
      if (this.streamError !== null) return;
    }
    this.classify(buf, p, e, nowMs);
  }

  /**
   * Fast path: a server lays out every chunk of a stream alike (same id, model, field order), so the
   * content key sits at the same offset from the payload start as in the previous content event;
   * checking those few bytes makes a token O(1). Valid JSON cannot hold an unescaped `"text":`
   * anywhere but as a key, so a match there is the key. A payload much longer than the shortest
   * content payload may carry extra fields (a usage object) and takes the full scan instead.
   * Full scan: one JS pass looking for the content key and "usage" at quote characters.
   */
  private classify(buf: Buffer, p: number, e: number, nowMs: number): void {
    const key = this.contentKey;
    const kl = key.length;
    const len = e - p;
    const off = this.keyOffset;
    if (off >= 0 && len <= this.minContentLen + FAST_PATH_SLACK_BYTES && p + off + kl < e && buf[p + off] === QUOTE && matchAt(buf, p + off, key)) {
      let j = skipSpace(buf, p + off + kl, e);
      if (buf[j] === COLON) {
        j = skipSpace(buf, j + 1, e);
        if (j + 1 < e && buf[j] === QUOTE && buf[j + 1] !== QUOTE) {
          if (len < this.minContentLen) this.minContentLen = len;
          this.onContent(nowMs);
        }
        return;
      }
    }
    const k1 = key[1] as number;
    const ul = USAGE_KEY.length;
    let content = false;
    let usage = false;
    for (let i = p; i < e; i++) {
      if (buf[i] !== QUOTE) continue;
      const c = buf[i + 1];
      if (!content && c === k1 && i + kl <= e && matchAt(buf, i, key)) {
        let j = skipSpace(buf, i + kl, e);
        if (buf[j] === COLON) {
          j = skipSpace(buf, j + 1, e);
          content = j + 1 < e && buf[j] === QUOTE && buf[j + 1] !== QUOTE;
          if (content) {
            this.keyOffset = i - p;
            if (len < this.minContentLen) this.minContentLen = len;
            // Skip the string value so quotes inside it are not taken for keys.
            i = skipString(buf, j + 1, e);
            continue;
          }
        }
      } else if (c === 0x75 /* u */ && !usage && i + ul <= e && matchAt(buf, i, USAGE_KEY)) {
        let j = skipSpace(buf, i + ul, e);
        if (buf[j] === COLON) {
          j = skipSpace(buf, j + 1, e);
          usage = buf[j] === LBRACE;
        }
      }
    }
    if (content) this.onContent(nowMs);
    if (usage) this.readUsage(buf, p, e);
  }

  private onContent(nowMs: number): void {
    const c = ++this.numContent;
    if (c === 1) {
      this.firstContentMs = nowMs;
    } else {
      if (c === 2) this.secondContentMs = nowMs;
      if (this.numGaps === this.gaps.length) {
        const grown = new Float64Array(this.gaps.length * 2);
        grown.set(this.gaps);
        this.gaps = grown;
      }
      this.gaps[this.numGaps++] = nowMs - this.lastContentMs;
    }
    this.lastContentMs = nowMs;
  }

  private inspectJson(buf: Buffer, p: number, e: number): void {
    let obj: unknown;
    try {
      obj = JSON.parse(buf.toString('utf8', p, e));
    } catch (err) {
      this.streamError = `invalid SSE data (not JSON): ${(err as Error).message}`;
      return;
    }
    if (obj === null || typeof obj !== 'object') {
      this.streamError = 'invalid SSE data: not a JSON object';
      return;
    }
    const o = obj as Record<string, unknown>;
    if (o['error'] !== undefined && o['error'] !== null) {
      const er = o['error'];
      const msg = typeof er === 'object' && er !== null && typeof (er as Record<string, unknown>)['message'] === 'string' ? (er as Record<string, unknown>)['message'] as string : JSON.stringify(er);
      this.streamError = `stream error: ${msg}`;
    } else if (o['object'] === 'error') {
      this.streamError = `stream error: ${typeof o['message'] === 'string' ? o['message'] : JSON.stringify(o)}`;
    }
  }

  private readUsage(buf: Buffer, p: number, e: number): void {
    let obj: unknown;
    try {
      obj = JSON.parse(buf.toString('utf8', p, e));
    } catch (err) {
      this.streamError = `invalid usage event (not JSON): ${(err as Error).message}`;
      return;
    }
    const u = (obj as { usage?: Record<string, unknown> }).usage;
    if (u === undefined || u === null || typeof u !== 'object') return;
    const pt = u['prompt_tokens'];
    const ct = u['completion_tokens'];
    const details = u['prompt_tokens_details'] as Record<string, unknown> | null | undefined;
    const cached = details !== null && typeof details === 'object' ? details['cached_tokens'] : undefined;
    this.usage = {
      promptTokens: typeof pt === 'number' ? pt : Number.NaN,
      completionTokens: typeof ct === 'number' ? ct : Number.NaN,
      cachedTokens: typeof cached === 'number' ? cached : Number.NaN,
    };
  }
}

function skipSpace(buf: Buffer, i: number, e: number): number {
  while (i < e) {
    const c = buf[i];
    if (c !== SPACE && c !== TAB && c !== NL && c !== CR) break;
    i++;
  }
  return i;
}

function matchAt(buf: Buffer, i: number, needle: Buffer): boolean {
  for (let k = 1; k < needle.length; k++) if (buf[i + k] !== needle[k]) return false;
  return true;
}

/** Index of the closing quote of a JSON string whose first content byte is at i (or e). */
function skipString(buf: Buffer, i: number, e: number): number {
  while (i < e) {
    const c = buf[i];
    if (c === 0x5c /* backslash */) i += 2;
    else if (c === QUOTE) return i;
    else i++;
  }
  return e;
}

function startsWith(buf: Buffer, delim: Buffer, k: number): boolean {
  // buf begins with delim[k:]
  const need = delim.length - k;
  if (buf.length < need) return false;
  for (let i = 0; i < need; i++) if (buf[i] !== delim[k + i]) return false;
  return true;
}

function startsWithAt(buf: Buffer, s: number, e: number, needle: Buffer): boolean {
  const n = needle.length;
  if (e - s < n) return false;
  for (let i = 0; i < n; i++) if (buf[s + i] !== needle[i]) return false;
  return true;
}
