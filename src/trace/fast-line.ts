/**
 * Byte-level fast path for the common shape of a Mooncake trace line: one flat JSON object whose
 * values are non-negative integers, plain ASCII strings, null, or lists of non-negative integers,
 * e.g. `{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}`.
 *
 * A day-long trace is a million lines and ~28 M hash ids; JSON.parse builds an object and an array
 * of boxed numbers per line only for us to copy them into a Uint32Array, which made reading slower
 * than replaying. This scanner reads the bytes once, straight into reused scratch arrays.
 *
 * It never decides that a line is invalid: anything it does not fully understand (escapes,
 * non-ASCII, fractions, exponents, signs, nested values, duplicate keys, more than 15 digits, bad
 * syntax) returns false and the caller parses that line with JSON.parse and the full checks, so
 * errors and edge cases keep exactly one definition (parseTraceLine in mooncake.ts).
 */

/** Keys the trace reader knows; an unknown key's value must still be simple to stay on the fast path. */
export const FastKey = {
  timestamp: 0,
  createdTime: 1,
  inputLength: 2,
  inputTokens: 3,
  outputLength: 4,
  outputTokens: 5,
  hashIds: 6,
  sessionId: 7,
  delay: 8,
  delayMs: 9,
  other: 10,
} as const;
const NUM_KEYS = 11;

const KEY_NAMES: ReadonlyArray<readonly [string, number]> = [
  ['timestamp', FastKey.timestamp],
  ['created_time', FastKey.createdTime],
  ['input_length', FastKey.inputLength],
  ['input_tokens', FastKey.inputTokens],
  ['output_length', FastKey.outputLength],
  ['output_tokens', FastKey.outputTokens],
  ['hash_ids', FastKey.hashIds],
  ['session_id', FastKey.sessionId],
  ['delay', FastKey.delay],
  ['delay_ms', FastKey.delayMs],
];

/** Value kinds of a scanned field. */
export const FastValue = { absent: 0, null: 1, number: 2, string: 3, list: 4 } as const;

/** What one scanned line holds, overwritten by the next scanLine(). */
export class FastLine {
  /** Per FastKey: FastValue kind. */
  readonly kind = new Uint8Array(NUM_KEYS);
  /** Per FastKey: the number (kind number). */
  readonly num = new Float64Array(NUM_KEYS);
  /** session_id's string (kind string). */
  sessionId = '';
  /** hash_ids (kind list): the first hashCount entries, as u32 (the low 32 bits, like Dynamo's `as u32`). */
  hashIds = new Uint32Array(1024);
  hashCount = 0;
  /** The last number scanUint() read. */
  uint = 0;
}

const enum C {
  tab = 9,
  nl = 10,
  cr = 13,
  space = 32,
  quote = 34,
  comma = 44,
  zero = 48,
  nine = 57,
  colon = 58,
  lbracket = 91,
  backslash = 92,
  rbracket = 93,
  n = 110,
  l = 108,
  u = 117,
  lbrace = 123,
  rbrace = 125,
}

function isSpace(c: number): boolean {
  return c === C.space || c === C.tab || c === C.cr || c === C.nl;
}

/** The first position at or after p that is not JSON whitespace (end if none). */
function skipSpace(buf: Uint8Array, p: number, end: number): number {
  while (p < end && isSpace(buf[p] as number)) p++;
  return p;
}

/** Key id of the ASCII key bytes [start, end), FastKey.other when unknown. */
function keyId(buf: Uint8Array, start: number, end: number): number {
  const len = end - start;
  for (let k = 0; k < KEY_NAMES.length; k++) {
    const entry = KEY_NAMES[k] as readonly [string, number];
    const name = entry[0];
    if (name.length !== len) continue;
    let same = true;
    for (let i = 0; i < len; i++) {
      if (name.charCodeAt(i) !== buf[start + i]) {
        same = false;
        break;
      }
    }
    if (same) return entry[1];
  }
  return FastKey.other;
}

/**
 * Scan the line bytes [start, end) (no newline inside) into `out`. Returns false when the line
 * needs the full JSON path (see the file comment); `out` is then unspecified.
 */
export function scanLine(buf: Uint8Array, start: number, end: number, out: FastLine): boolean {
  const kind = out.kind;
  kind.fill(FastValue.absent);
  let p = start;
  p = skipSpace(buf, p, end);
  if (p >= end || buf[p] !== C.lbrace) return false;
  p++;
  p = skipSpace(buf, p, end);
  if (p < end && buf[p] === C.rbrace) return false; // {} — let the full path name what is missing
  for (;;) {
    // "key"
    if (p >= end || buf[p] !== C.quote) return false;
    const keyStart = ++p;
    p = scanPlainString(buf, p, end);
    if (p < 0) return false;
    const key = keyId(buf, keyStart, p);
    p++;
    p = skipSpace(buf, p, end);
    if (p >= end || buf[p] !== C.colon) return false;
    p++;
    p = skipSpace(buf, p, end);
    if (p >= end) return false;
    // A repeated known key: JSON.parse keeps the last one; leave that rule to it.
    if (key !== FastKey.other && kind[key] !== FastValue.absent) return false;
    const c = buf[p] as number;
    if (c >= C.zero && c <= C.nine) {
      p = scanUint(buf, p, end, out);
      if (p < 0) return false;
      if (key !== FastKey.other) {
        kind[key] = FastValue.number;
        out.num[key] = out.uint;
      }
    } else if (c === C.quote) {
      const strStart = ++p;
      p = scanPlainString(buf, p, end);
      if (p < 0) return false;
      if (key === FastKey.sessionId) {
        kind[key] = FastValue.string;
        out.sessionId = latin1(buf, strStart, p);
      } else if (key !== FastKey.other) {
        kind[key] = FastValue.string;
      }
      p++;
    } else if (c === C.n) {
      if (p + 4 > end || buf[p + 1] !== C.u || buf[p + 2] !== C.l || buf[p + 3] !== C.l) return false;
      p += 4;
      if (key !== FastKey.other) kind[key] = FastValue.null;
    } else if (c === C.lbracket) {
      if (key !== FastKey.hashIds) return false;
      p++;
      let n = 0;
      let ids = out.hashIds;
      p = skipSpace(buf, p, end);
      if (p < end && buf[p] === C.rbracket) {
        p++;
      } else {
        for (;;) {
          p = p < end ? scanUint(buf, p, end, out) : -1;
          if (p < 0) return false;
          if (n === ids.length) {
            const grown = new Uint32Array(ids.length * 2);
            grown.set(ids);
            ids = out.hashIds = grown;
          }
          ids[n++] = out.uint % 4294967296;
          p = skipSpace(buf, p, end);
          if (p >= end) return false;
          if (buf[p] === C.comma) {
            p++;
            p = skipSpace(buf, p, end);
            continue;
          }
          if (buf[p] === C.rbracket) {
            p++;
            break;
          }
          return false;
        }
      }
      kind[key] = FastValue.list;
      out.hashCount = n;
    } else {
      return false;
    }
    p = skipSpace(buf, p, end);
    if (p >= end) return false;
    if (buf[p] === C.comma) {
      p++;
      p = skipSpace(buf, p, end);
      continue;
    }
    if (buf[p] !== C.rbrace) return false;
    p++;
    p = skipSpace(buf, p, end);
    return p === end;
  }
}

/**
 * The body of a JSON string starting at p (after its opening quote) when it is plain ASCII: returns
 * the position of the closing quote, or -1 for escapes, control or non-ASCII bytes, or no end.
 */
function scanPlainString(buf: Uint8Array, p: number, end: number): number {
  while (p < end) {
    const c = buf[p] as number;
    if (c === C.quote) return p;
    if (c === C.backslash || c >= 0x80 || c < 0x20) return -1;
    p++;
  }
  return -1;
}

/**
 * A non-negative JSON integer starting at p: no sign, fraction or exponent, no leading zero, at
 * most 15 digits (exact as a double). Leaves the value in out.uint and returns the position after
 * it, or -1 when the number needs JSON.parse.
 */
function scanUint(buf: Uint8Array, p: number, end: number, out: FastLine): number {
  const first = buf[p] as number;
  if (first < C.zero || first > C.nine) return -1;
  const start = p;
  let v = 0;
  while (p < end) {
    const d = (buf[p] as number) - C.zero;
    if (d < 0 || d > 9) break;
    v = v * 10 + d;
    p++;
  }
  const digits = p - start;
  if (digits > 15 || (digits > 1 && first === C.zero)) return -1;
  out.uint = v;
  return p;
}

/** ASCII bytes (checked by the caller) as a string. */
function latin1(buf: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(buf[i] as number);
  return s;
}
