/**
 * Text written straight into bytes: constant pieces are encoded once (Buffers) and copied, numbers
 * are written as ASCII digits. Used for the `/metrics` exposition (label prefixes encoded once per
 * series; rendering through JS strings ran at ~50 MB/s at 4096 ranks, this several times faster)
 * and for `trace synth`'s JSONL (300 MiB of digits; template strings spent most of their time in
 * string ropes and the garbage collector).
 */

/** Sample value as prom-client writes it (NaN is `Nan`, as prom-client does). */
export function fmt(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return `${v}`;
}

export class TextWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialBytes = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** Start a new text; `expectBytes` sizes the buffer (e.g. the last render of the same chunk). */
  reset(expectBytes = 0): void {
    if (this.buf.length < expectBytes) this.buf = Buffer.allocUnsafe(expectBytes + (expectBytes >> 3));
    this.pos = 0;
  }

  /** The text written since reset(), as a view of the writer's buffer (valid until the next reset). */
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** A copy of the text written since reset(). */
  copy(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }

  get length(): number {
    return this.pos;
  }

  private grow(need: number): void {
    let size = this.buf.length * 2;
    while (size < this.pos + need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  bytes(b: Uint8Array): void {
    const n = b.length;
    if (this.pos + n > this.buf.length) this.grow(n);
    const buf = this.buf;
    if (n <= 16) {
      // Short pieces (separators, field names): a loop beats set()'s per-call cost.
      let p = this.pos;
      for (let i = 0; i < n; i++) buf[p++] = b[i] as number;
      this.pos = p;
      return;
    }
    buf.set(b, this.pos);
    this.pos += n;
  }

  /** Any string (UTF-8). */
  str(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    if (this.pos + n > this.buf.length) this.grow(n);
    this.pos += this.buf.write(s, this.pos, n, 'utf8');
  }

  /** A number as `${v}` writes it; non-negative integers below 1e15 as digits, without a string. */
  number(v: number): void {
    if (this.pos + 32 > this.buf.length) this.grow(32);
    const b = this.buf;
    if (Number.isInteger(v) && v >= 0 && v < 1e15) {
      let digits = 1;
      for (let t = v; t >= 10; t = Math.floor(t / 10)) digits++;
      let p = this.pos + digits;
      this.pos = p;
      let t = v;
      do {
        const q = Math.floor(t / 10);
        b[--p] = 0x30 + (t - q * 10);
        t = q;
      } while (t > 0);
      return;
    }
    this.pos += b.write(`${v}`, this.pos, 'latin1');
  }

  /** A sample value (prom-client's spelling of NaN and infinities) and the line's newline. */
  value(v: number): void {
    if (Number.isFinite(v)) this.number(v);
    else this.str(fmt(v));
    if (this.pos + 1 > this.buf.length) this.grow(1);
    this.buf[this.pos++] = 0x0a;
  }

  /**
   * Hand over the text written since reset() without copying; the writer continues in a fresh
   * buffer of at least minBytes (for a consumer that keeps the bytes, e.g. a write stream).
   */
  take(minBytes = 0): Buffer {
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(Math.max(out.length, minBytes, 1 << 16));
    this.pos = 0;
    return out;
  }
}
