/**
 * Coalesced SSE output. Everything a response has ready within one event-loop turn goes to the
 * socket in ONE res.write: producers append to the stream's pending string, and a single
 * setImmediate per turn flushes every stream that has something pending (node-notes §11: one
 * event per write costs ~6.7x throughput). When res.write reports backpressure the stream keeps
 * appending and writes again on 'drain'; nothing is dropped.
 *
 * Output is collected as bytes: token events are two cached byte runs (the response's constant
 * prefix, the token's quoted text + suffix), copied into one buffer per write, so the hot path
 * builds no strings. Text producers push ASCII only (json-ascii.ts), written as latin1.
 */
import type { ServerResponse } from 'node:http';

export class FlushScheduler {
  private readonly dirty: SseStream[];
  private scheduled: boolean;
  private readonly runBound: () => void;

  constructor() {
    this.dirty = [];
    this.scheduled = false;
    this.runBound = () => this.run();
  }

  mark(stream: SseStream): void {
    this.dirty.push(stream);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.runBound);
    }
  }

  private run(): void {
    this.scheduled = false;
    const list = this.dirty;
    for (let i = 0; i < list.length; i++) (list[i] as SseStream).flush();
    list.length = 0;
  }
}

export class SseStream {
  private readonly res: ServerResponse;
  private readonly scheduler: FlushScheduler;
  /** Bytes not yet written; a fresh buffer after every write (the socket may still hold the old one). */
  private buf: Buffer | null;
  private len: number;
  /** Size of the last write: the next buffer starts that large. */
  private sizeHint: number;
  /** In the scheduler's dirty list for this turn. */
  private queued: boolean;
  /** res.write returned false; waiting for 'drain'. */
  private blocked: boolean;
  private ending: boolean;
  private closed: boolean;
  private readonly onDrainBound: () => void;

  constructor(res: ServerResponse, scheduler: FlushScheduler) {
    this.res = res;
    this.scheduler = scheduler;
    this.buf = null;
    this.len = 0;
    this.sizeHint = 4096;
    this.queued = false;
    this.blocked = false;
    this.ending = false;
    this.closed = false;
    this.onDrainBound = () => this.onDrain();
  }

  /** Appends one token event: the response's constant prefix bytes, then the token's cached tail. */
  pushToken(prefix: Uint8Array, tail: Uint8Array): void {
    if (this.closed || this.ending) return;
    const buf = this.reserve(prefix.length + tail.length);
    buf.set(prefix, this.len);
    buf.set(tail, this.len + prefix.length);
    this.len += prefix.length + tail.length;
    this.maybeSchedule();
  }

  /** Appends SSE text (one or more complete `data: ...\n\n` events), ASCII only. */
  push(text: string): void {
    if (this.closed || this.ending) return;
    this.appendText(text);
    this.maybeSchedule();
  }

  /** Appends the final events and ends the response with them. */
  end(text: string): void {
    if (this.closed || this.ending) return;
    this.appendText(text);
    this.ending = true;
    this.maybeSchedule();
  }

  /** The client is gone: drop pending output, write nothing more. */
  close(): void {
    this.closed = true;
    this.buf = null;
    this.len = 0;
  }

  flush(): void {
    this.queued = false;
    if (this.closed || this.blocked) return;
    const out = this.buf === null ? null : this.buf.subarray(0, this.len);
    if (out !== null) this.sizeHint = Math.max(4096, this.len);
    this.buf = null;
    this.len = 0;
    if (this.ending) {
      this.closed = true;
      if (out === null) this.res.end();
      else this.res.end(out);
      return;
    }
    if (out === null || out.length === 0) return;
    if (!this.res.write(out)) {
      this.blocked = true;
      this.res.once('drain', this.onDrainBound);
    }
  }

  private appendText(text: string): void {
    const buf = this.reserve(text.length);
    this.len += buf.write(text, this.len, 'latin1');
  }

  private reserve(extra: number): Buffer {
    let buf = this.buf;
    if (buf === null) {
      buf = Buffer.allocUnsafe(Math.max(this.sizeHint, extra));
      this.buf = buf;
      this.len = 0;
    } else if (this.len + extra > buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(buf.length * 2, this.len + extra));
      buf.copy(grown, 0, 0, this.len);
      buf = grown;
      this.buf = grown;
    }
    return buf;
  }

  private maybeSchedule(): void {
    if (this.queued || this.blocked) return;
    this.queued = true;
    this.scheduler.mark(this);
  }

  private onDrain(): void {
    this.blocked = false;
    if (this.len > 0 || this.ending) this.maybeSchedule();
  }
}
