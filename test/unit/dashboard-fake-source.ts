/** A DashboardSource over plain counter arrays, for the dashboard unit tests. */
import { Scalar, counterLayout, observe } from '../../src/protocol/rank-counters.js';
import type { CounterLayout, HistogramDef } from '../../src/protocol/rank-counters.js';
import type { DashboardPublisher, DashboardRankInfo, DashboardSource } from '../../src/dashboard/source.js';
import type { PublisherStats } from '../../src/transport/stats.js';

export class FakeSource implements DashboardSource {
  readonly numRanks: number;
  readonly modelName = 'fake-model';
  readonly config = { speedupRatio: 1, router: 'round-robin', natsUrl: 'nats://127.0.0.1:4222' as string | null };
  readonly layout: CounterLayout;
  readonly counters: Float64Array[];
  readonly restarts: number[];
  pub: { published: number; dropped: number; bytes: number; natsConnected: boolean } = { published: 0, dropped: 0, bytes: 0, natsConnected: true };
  publisherReads = 0;

  constructor(
    readonly numWorkers: number,
    readonly dataParallelSize: number,
  ) {
    this.numRanks = numWorkers * dataParallelSize;
    this.layout = counterLayout(4096);
    this.counters = [];
    this.restarts = [];
    for (let r = 0; r < this.numRanks; r++) {
      this.counters.push(new Float64Array(this.layout.floatsPerRank));
      this.restarts.push(0);
    }
  }

  ranks(): readonly DashboardRankInfo[] {
    const out: DashboardRankInfo[] = [];
    for (let r = 0; r < this.numRanks; r++) {
      out.push({ rank: r, workerIndex: Math.floor(r / this.dataParallelSize), dpRank: r % this.dataParallelSize, workerId: BigInt(1000 + Math.floor(r / this.dataParallelSize)), cpu: r, tid: 5000 + r });
    }
    return out;
  }

  rankRestarts(rank: number): number {
    return this.restarts[rank] as number;
  }

  publisherHandle(): DashboardPublisher {
    const stats = (): PublisherStats => {
      this.publisherReads++;
      return {
        published: this.pub.published,
        dropped: this.pub.dropped,
        droppedByPublisher: this.pub.dropped,
        droppedByRanks: 0,
        zmq: { published: 0, dropped: 0, bytes: 0 },
        bytes: this.pub.bytes,
        publishedByTopic: {} as PublisherStats['publishedByTopic'],
        natsConnected: this.pub.natsConnected,
        reconnects: 0,
        disconnects: 0,
        bufferedMessages: 0,
        bufferedBytes: 0,
        flushFailures: 0,
      };
    };
    return { stats, tid: 4242, pinnedCpus: null };
  }

  // Like the rank thread, every change counts a pass (the dashboard visits ranks whose activity
  // counters moved; src/dashboard/fleet-state.ts).
  add(rank: number, index: number, delta: number): void {
    const c = this.counters[rank] as Float64Array;
    c[index] = (c[index] as number) + delta;
    this.pass(rank, index);
  }

  set(rank: number, index: number, value: number): void {
    (this.counters[rank] as Float64Array)[index] = value;
    this.pass(rank, index);
  }

  observe(rank: number, h: HistogramDef, valueS: number, times = 1): void {
    for (let i = 0; i < times; i++) observe(this.counters[rank] as Float64Array, 0, h, valueS);
    this.pass(rank, -1);
  }

  private pass(rank: number, index: number): void {
    if (index === Scalar.passes) return;
    const c = this.counters[rank] as Float64Array;
    c[Scalar.passes] = (c[Scalar.passes] as number) + 1;
  }
}

/** A clock the test moves by hand. */
export class ManualClock {
  constructor(public ms = 1_700_000_000_000) {}
  readonly now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** Timers that only fire when the test says so, and count what is active. */
export class ManualTimers {
  private nextId = 1;
  readonly active = new Map<number, { fn: () => void; ms: number }>();
  setInterval(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.active.set(id, { fn, ms });
    return id;
  }
  clearInterval(handle: unknown): void {
    this.active.delete(handle as number);
  }
  /** Fire every active interval of period `ms`. */
  fire(ms: number): void {
    for (const t of [...this.active.values()]) if (t.ms === ms) t.fn();
  }
  count(ms?: number): number {
    let n = 0;
    for (const t of this.active.values()) if (ms === undefined || t.ms === ms) n++;
    return n;
  }
}
