/**
 * Feeds a fleet frontend's KV router from the KV events every rank already publishes on NATS,
 * read the way a Dynamo router reads them (current layout: lib/llm/src/kv_router/publisher.rs,
 * lib/runtime event plane): subject `namespace.{ns}.component.{component}.endpoint.{ep}.kv-events`,
 * msgpack envelope {topic, publisher_id, sequence, published_at, payload: bin} whose payload is a
 * msgpack array of RouterEvent maps {worker_id, event: {event_id, data, dp_rank}} (one batch per
 * pass), data = {stored: {parent_hash, blocks: [{block_hash, …}]}} | {removed: {block_hashes}} |
 * "cleared". The older component-scoped subject `…component.{component}.kv-events` with one
 * RouterEvent per message is read too, so the frontend works with either publisher layout.
 */
import { Unpackr } from 'msgpackr';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';

export interface KvEventSink {
  /** Blocks (sequence hashes hi/lo[0, n)) stored by (workerId, dpRank). */
  onStored(workerId: bigint, dpRank: number, n: number, hi: Uint32Array, lo: Uint32Array): void;
  onRemoved(workerId: bigint, dpRank: number, n: number, hi: Uint32Array, lo: Uint32Array): void;
  onCleared(workerId: bigint, dpRank: number): void;
}

export function kvEventSubjects(namespace: string, component: string): string[] {
  return [`namespace.${namespace}.component.${component}.endpoint.*.kv-events`, `namespace.${namespace}.component.${component}.kv-events`];
}

type U64 = number | bigint;
interface RouterEventMsg {
  worker_id?: U64;
  event?: { event_id?: U64; dp_rank?: number; data?: unknown };
}

const M32 = 0xffffffffn;

export class KvEventConsumer {
  private readonly unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' });
  private readonly subs: Subscription[] = [];
  private hi = new Uint32Array(256);
  private lo = new Uint32Array(256);
  /** Messages that could not be decoded (counted, first one logged). */
  malformed = 0;
  events = 0;

  constructor(
    nc: NatsConnection,
    namespace: string,
    component: string,
    private readonly sink: KvEventSink,
    private readonly log: (line: string) => void,
  ) {
    for (const subject of kvEventSubjects(namespace, component)) {
      this.subs.push(
        nc.subscribe(subject, {
          callback: (err, msg) => {
            if (err === null) this.onMessage(msg.data);
          },
        }),
      );
    }
  }

  private onMessage(data: Uint8Array): void {
    try {
      const env = this.unpackr.unpack(data) as { payload?: Uint8Array };
      if (!(env.payload instanceof Uint8Array)) throw new Error('envelope has no binary payload');
      const payload = this.unpackr.unpack(env.payload) as unknown;
      if (Array.isArray(payload)) for (const ev of payload) this.apply(ev as RouterEventMsg);
      else this.apply(payload as RouterEventMsg);
    } catch (err) {
      if (this.malformed++ === 0) this.log(`mockfleet: ignoring a KV event message that is not a Dynamo RouterEvent (${err instanceof Error ? err.message : String(err)})`);
    }
  }

  private apply(ev: RouterEventMsg): void {
    if (ev === null || typeof ev !== 'object' || ev.worker_id === undefined || ev.event === undefined) throw new Error('RouterEvent without worker_id/event');
    const workerId = BigInt(ev.worker_id);
    const dpRank = Number(ev.event.dp_rank ?? 0);
    const data = ev.event.data;
    this.events++;
    if (data === 'cleared') {
      this.sink.onCleared(workerId, dpRank);
      return;
    }
    const d = data as { stored?: { blocks?: Array<{ block_hash: U64 }> }; removed?: { block_hashes?: U64[] } };
    if (d.stored !== undefined) {
      const blocks = d.stored.blocks ?? [];
      this.ensure(blocks.length);
      for (let i = 0; i < blocks.length; i++) this.split(i, (blocks[i] as { block_hash: U64 }).block_hash);
      this.sink.onStored(workerId, dpRank, blocks.length, this.hi, this.lo);
    } else if (d.removed !== undefined) {
      const hashes = d.removed.block_hashes ?? [];
      this.ensure(hashes.length);
      for (let i = 0; i < hashes.length; i++) this.split(i, hashes[i] as U64);
      this.sink.onRemoved(workerId, dpRank, hashes.length, this.hi, this.lo);
    } else {
      throw new Error('RouterEvent data is neither stored, removed nor cleared');
    }
  }

  private ensure(n: number): void {
    if (n <= this.hi.length) return;
    this.hi = new Uint32Array(n * 2);
    this.lo = new Uint32Array(n * 2);
  }

  private split(i: number, h: U64): void {
    const v = BigInt(h);
    this.hi[i] = Number((v >> 32n) & M32);
    this.lo[i] = Number(v & M32);
  }

  close(): void {
    for (const s of this.subs) s.unsubscribe();
  }
}
