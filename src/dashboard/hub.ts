/**
 * Fan-out of one tick document to every open event stream. The tick timer exists only while
 * someone listens: the first subscriber starts it, the last one leaving stops it, so an unwatched
 * dashboard costs the server no tick work at all. Each tick is built once and the same string is
 * written to every subscriber; a subscriber whose socket is backed up skips ticks until it
 * drains instead of buffering without bound.
 */

export interface Timers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const NODE_TIMERS: Timers = {
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface Subscriber {
  /** Write one chunk; false = the socket buffer is full (skip until drained()). */
  write(chunk: string): boolean;
}

interface Entry {
  readonly sub: Subscriber;
  blocked: boolean;
}

export class TickHub {
  private readonly entries = new Map<Subscriber, Entry>();
  private timer: unknown = null;
  private latest: string | null = null;
  /** Ticks built, and ticks skipped for backed-up subscribers. */
  readonly stats = { ticks: 0, skipped: 0 };

  constructor(
    private readonly build: () => string,
    readonly tickMs: number,
    private readonly timers: Timers = NODE_TIMERS,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /** Latest tick, built now when no timer is running (the first subscriber's init needs one). */
  current(): string {
    if (this.latest === null || this.timer === null) this.latest = this.build();
    return this.latest;
  }

  /** `blocked`: the subscriber's socket is already full (its first write returned false). */
  add(sub: Subscriber, blocked = false): void {
    if (this.entries.has(sub)) return;
    this.entries.set(sub, { sub, blocked });
    if (this.timer === null) this.timer = this.timers.setInterval(() => this.tick(), this.tickMs);
  }

  remove(sub: Subscriber): void {
    if (!this.entries.delete(sub)) return;
    if (this.entries.size === 0) this.stop();
  }

  /** The subscriber's socket drained; it gets the next tick again. */
  drained(sub: Subscriber): void {
    const e = this.entries.get(sub);
    if (e !== undefined) e.blocked = false;
  }

  tick(): void {
    const json = this.build();
    this.latest = json;
    const payload = `event: tick\ndata: ${json}\n\n`;
    this.stats.ticks++;
    for (const e of this.entries.values()) {
      if (e.blocked) {
        this.stats.skipped++;
        continue;
      }
      if (!e.sub.write(payload)) e.blocked = true;
    }
  }

  stop(): void {
    if (this.timer !== null) this.timers.clearInterval(this.timer);
    this.timer = null;
    this.latest = null;
  }

  /** Stop the timer and forget every subscriber (the service ends their responses). */
  clear(): Subscriber[] {
    const subs = [...this.entries.keys()];
    this.entries.clear();
    this.stop();
    return subs;
  }
}
