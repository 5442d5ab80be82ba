/**
 * Publisher statistics in a SharedArrayBuffer: the publisher thread is the only writer (once per
 * drain pass), the main thread reads them at any time without messages (e.g. at /metrics
 * scrape). Rank-side drops live in each ring's header and are added on read.
 */
import { SpscRing } from '../protocol/ring.js';
import type { RingMemory } from '../protocol/ring.js';
import { TOPIC_NAMES } from '../protocol/topics.js';
import type { TopicName } from '../protocol/topics.js';

export const Stat = {
  /** Messages handed to NATS (or to the embedded sink). */
  published: 0,
  /** Messages the publisher dropped: disconnected-buffer overflow, or still buffered at close. */
  dropped: 1,
  /** Envelope bytes published. */
  bytes: 2,
  /** published per topic code: index publishedByTopic + code - 1. */
  publishedByTopic: 3,
  natsConnected: 7,
  reconnects: 8,
  disconnects: 9,
  /** Messages / bytes currently held while NATS is disconnected. */
  bufferedMessages: 10,
  bufferedBytes: 11,
  /** nats flush() calls that failed or timed out (messages may have been lost with the socket). */
  flushFailures: 12,
  /** vLLM batches sent on ZMQ PUB sockets / dropped (a subscriber queue at hwm) / bytes sent. */
  zmqPublished: 13,
  zmqDropped: 14,
  zmqBytes: 15,
} as const;
export const STAT_SLOTS = 16;

export function allocateStats(): SharedArrayBuffer {
  return new SharedArrayBuffer(STAT_SLOTS * 8);
}

export interface PublisherStats {
  published: number;
  /** All drops: publisher-side plus rank-side (ring stayed full). */
  dropped: number;
  droppedByPublisher: number;
  droppedByRanks: number;
  bytes: number;
  publishedByTopic: Record<TopicName, number>;
  natsConnected: boolean;
  reconnects: number;
  disconnects: number;
  bufferedMessages: number;
  bufferedBytes: number;
  flushFailures: number;
  /** vLLM KVEventBatch messages on ZMQ (--kv-events-config); not part of the NATS counts above. */
  zmq: { published: number; dropped: number; bytes: number };
}

export class StatsReader {
  private readonly cells: BigInt64Array;
  private readonly rings: SpscRing[];

  constructor(statsSab: SharedArrayBuffer, ringSabs: readonly RingMemory[]) {
    this.cells = new BigInt64Array(statsSab, 0, STAT_SLOTS);
    this.rings = ringSabs.map((s) => new SpscRing(s));
  }

  get(i: number): number {
    return Number(Atomics.load(this.cells, i));
  }

  droppedByRanks(): number {
    let n = 0;
    for (const r of this.rings) n += r.droppedRecords();
    return n;
  }

  read(): PublisherStats {
    const droppedByPublisher = this.get(Stat.dropped);
    const droppedByRanks = this.droppedByRanks();
    return {
      published: this.get(Stat.published),
      dropped: droppedByPublisher + droppedByRanks,
      droppedByPublisher,
      droppedByRanks,
      bytes: this.get(Stat.bytes),
      publishedByTopic: {
        [TOPIC_NAMES[1]]: this.get(Stat.publishedByTopic),
        [TOPIC_NAMES[2]]: this.get(Stat.publishedByTopic + 1),
        [TOPIC_NAMES[3]]: this.get(Stat.publishedByTopic + 2),
        [TOPIC_NAMES[4]]: this.get(Stat.publishedByTopic + 3),
      } as Record<TopicName, number>,
      natsConnected: this.get(Stat.natsConnected) !== 0,
      reconnects: this.get(Stat.reconnects),
      disconnects: this.get(Stat.disconnects),
      bufferedMessages: this.get(Stat.bufferedMessages),
      bufferedBytes: this.get(Stat.bufferedBytes),
      flushFailures: this.get(Stat.flushFailures),
      zmq: { published: this.get(Stat.zmqPublished), dropped: this.get(Stat.zmqDropped), bytes: this.get(Stat.zmqBytes) },
    };
  }
}
