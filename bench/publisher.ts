/**
 * Shared publisher vs a raw nats.js publish loop, same nats-server, same run.
 *
 *   shared: R rank threads (RankEventWriter -> SPSC ring) -> publisher thread (envelope,
 *           sequence, cached subject) -> nats-server
 *   raw:    main thread publishes the same pre-encoded envelopes in batches of 1000
 *
 * Traffic: per simulated pass 12 KV events (8 stored of 1-2 blocks, 4 removed) + 1 FPM.
 * Prints one JSON line: {"bench":"publisher","shared_msgs_per_s","raw_msgs_per_s","ratio",
 * "shared_publisher_cpu_us_per_msg","raw_cpu_us_per_msg","cpu_ratio",...}: throughput (best of
 * --reps, interleaved) and the CPU time of the one thread that calls nats.js (from /proc), which
 * is less sensitive to other load on the host than wall-clock throughput.
 * Usage: node dist/bench/publisher.js [--messages N] [--ranks R] [--reps K]
 */
import { readFileSync } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect } from '@nats-io/transport-node';
import type { FpmSnapshot, KvEventLog } from '../src/engine/types.js';
import { KvEventKind } from '../src/engine/types.js';
import { RankEventWriter } from '../src/protocol/rank-events.js';
import { Doorbell, SpscRing } from '../src/protocol/ring.js';
import { TOPIC_NAMES, TopicCode, buildSubject } from '../src/protocol/topics.js';
import { MsgpackWriter, encodeEnvelope, encodeFpm, encodeRouterEvent, envelopeOverhead, msgpackStr, splitU64 } from '../src/protocol/wire.js';
import { startPublisher } from '../src/transport/publisher.js';
import { startNatsServer } from '../test/support/nats-server.js';

const KV_PER_PASS = 12;
const NS = 'bench';
const COMPONENT = 'mocker';

const FPM: FpmSnapshot = {
  numPrefillRequests: 1,
  sumPrefillTokens: 512,
  varPrefillLength: 0,
  sumPrefillKvTokens: 128,
  numDecodeRequests: 63,
  sumDecodeKvTokens: 81234,
  varDecodeKvTokens: 1234.5,
  numQueuedPrefill: 2,
  sumQueuedPrefillTokens: 2048,
  varQueuedPrefillLength: 16,
  numQueuedDecode: 0,
  sumQueuedDecodeKvTokens: 0,
  varQueuedDecodeKvTokens: 0,
};

/** 12 events: 8 stored (alternating 1 and 2 blocks, with parents), 4 removed (1 block). */
function passLog(blockSize: number): KvEventLog {
  const n = KV_PER_PASS;
  const kinds: number[] = [];
  const counts: number[] = [];
  for (let i = 0; i < n; i++) {
    const stored = i % 3 !== 2;
    kinds.push(stored ? KvEventKind.stored : KvEventKind.removed);
    counts.push(stored ? 1 + (i % 2) : 1);
  }
  const blocks = counts.reduce((a, b) => a + b, 0);
  const log: KvEventLog = {
    count: n,
    firstEventId: 0,
    blockSize,
    kind: Uint8Array.from(kinds),
    hasParent: new Uint8Array(n).fill(1),
    parentHi: new Uint32Array(n).fill(0x9e3779b9),
    parentLo: new Uint32Array(n).fill(0x7f4a7c15),
    hashStart: new Int32Array(n),
    hashCount: Int32Array.from(counts),
    tokenStart: new Int32Array(n),
    seqHashHi: new Uint32Array(blocks),
    seqHashLo: new Uint32Array(blocks),
    tokHashHi: new Uint32Array(blocks),
    tokHashLo: new Uint32Array(blocks),
    tokens: new Uint32Array(blocks * blockSize),
  };
  let h = 0;
  for (let i = 0; i < n; i++) {
    log.hashStart[i] = h;
    log.tokenStart[i] = h * blockSize;
    h += counts[i]!;
  }
  for (let j = 0; j < blocks; j++) {
    log.seqHashHi[j] = (0x85ebca6b * (j + 1)) >>> 0;
    log.seqHashLo[j] = (0xc2b2ae35 * (j + 7)) >>> 0;
    log.tokHashHi[j] = (0x27d4eb2f * (j + 3)) >>> 0;
    log.tokHashLo[j] = (0x165667b1 * (j + 5)) >>> 0;
  }
  return log;
}

/** CPU seconds (user + system) a thread of this process has used, from /proc. */
function threadCpuS(tid: number): number {
  const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface RankJob {
  ring: SharedArrayBuffer;
  bell: SharedArrayBuffer;
  go: SharedArrayBuffer;
  workerId: bigint;
  passes: number;
}

/** Rank thread: wait for the start flag, then write `passes` x (12 KV events + 1 FPM). */
function rankMain(job: RankJob): void {
  const writer = new RankEventWriter(new SpscRing(job.ring), {
    workerId: job.workerId,
    dpRank: 0,
    kvEventsFormat: 'dynamo',
    vllmEncoding: 'array',
    doorbell: new Doorbell(job.bell),
    blockTimeoutMs: 10_000,
  });
  const log = passLog(16);
  const go = new Int32Array(job.go);
  Atomics.wait(go, 0, 0);
  for (let p = 0; p < job.passes; p++) {
    log.firstEventId = p * KV_PER_PASS;
    writer.writeKvEvents(log, p);
    writer.writeFpm(FPM, 0.012);
  }
  parentPort!.postMessage({ dropped: writer.droppedRecords });
}

async function sharedRun(url: string, ranks: number, passesPerRank: number): Promise<{ msgsPerS: number; dropped: number; cpuUsPerMsg: number }> {
  const rings = Array.from({ length: ranks }, () => SpscRing.allocate(1 << 20));
  const bell = Doorbell.allocate();
  const go = new SharedArrayBuffer(4);
  const ids = Array.from({ length: ranks }, (_, r) => 0x7000_0000_0000_0000n + BigInt(r));
  const pub = await startPublisher({ rings, doorbell: bell, rankWorkerIds: ids, rankDpRanks: ids.map(() => 0), natsUrl: url, namespace: NS, component: COMPONENT, eventsFile: null });
  while (!pub.stats().natsConnected) await new Promise((r) => setTimeout(r, 5));
  const workers = rings.map((ring, r) => new Worker(new URL(import.meta.url), { workerData: { role: 'rank', job: { ring, bell, go, workerId: ids[r]!, passes: passesPerRank } } }));
  const done = workers.map((w) => new Promise<{ dropped: number }>((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  }));
  await new Promise((r) => setTimeout(r, 100)); // let the threads reach their start barrier
  const total = ranks * passesPerRank * (KV_PER_PASS + 1);
  const tid = pub.tid;
  const cpu0 = tid === null ? 0 : threadCpuS(tid);
  const t0 = performance.now();
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);
  while (pub.stats().published + pub.stats().dropped < total) await new Promise((r) => setTimeout(r, 5));
  const cpu1 = tid === null ? 0 : threadCpuS(tid);
  await pub.flushAndClose(10_000); // includes the final NATS flush
  const t1 = performance.now();
  const results = await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
  const s = pub.stats();
  return {
    msgsPerS: s.published / ((t1 - t0) / 1000),
    dropped: s.dropped + results.reduce((a, r) => a + r.dropped, 0),
    cpuUsPerMsg: ((cpu1 - cpu0) * 1e6) / s.published,
  };
}

/** The envelopes the shared path produces for one pass, pre-encoded. */
function preEncoded(): Array<{ subject: string; data: Uint8Array }> {
  const log = passLog(16);
  const { hi, lo } = splitU64(0x7000_0000_0000_0000n);
  const out: Array<{ subject: string; data: Uint8Array }> = [];
  const payload = new MsgpackWriter(4096);
  const envelope = (code: number, seq: number): void => {
    const topic = msgpackStr(TOPIC_NAMES[code]!);
    const w = new MsgpackWriter(envelopeOverhead(topic) + payload.pos);
    encodeEnvelope(w, topic, hi, lo, seq, Date.now(), payload.buf, 0, payload.pos);
    out.push({ subject: buildSubject(NS, COMPONENT, TOPIC_NAMES[code] as 'kv-events'), data: w.buf.slice(0, w.pos) });
  };
  for (let i = 0; i < KV_PER_PASS; i++) {
    payload.pos = 0;
    encodeRouterEvent(payload, hi, lo, 0, log, i);
    envelope(TopicCode.kvEvents, i);
  }
  payload.pos = 0;
  encodeFpm(payload, msgpackStr('8070450532247928832'), 0, 1, 0.012, FPM);
  envelope(TopicCode.forwardPassMetrics, 0);
  return out;
}

async function rawRun(url: string, total: number): Promise<{ msgsPerS: number; cpuUsPerMsg: number }> {
  const msgs = preEncoded();
  const nc = await connect({ servers: url });
  const cpu0 = threadCpuS(process.pid);
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const end = Math.min(total, sent + 1000);
    for (; sent < end; sent++) {
      const m = msgs[sent % msgs.length]!;
      nc.publish(m.subject, m.data);
    }
    await yieldToLoop();
  }
  await nc.flush();
  const t1 = performance.now();
  const cpu1 = threadCpuS(process.pid);
  await nc.close();
  return { msgsPerS: total / ((t1 - t0) / 1000), cpuUsPerMsg: ((cpu1 - cpu0) * 1e6) / total };
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

async function main(): Promise<void> {
  const messages = arg('messages', 650_000);
  const ranks = arg('ranks', 2);
  const reps = arg('reps', 3);
  const passesPerRank = Math.ceil(messages / ranks / (KV_PER_PASS + 1));
  const total = passesPerRank * ranks * (KV_PER_PASS + 1);
  const server = await startNatsServer();
  try {
    await rawRun(server.url, 50_000); // warm-up (JIT, server)
    await sharedRun(server.url, ranks, 1000);
    let raw = 0;
    let shared = 0;
    let dropped = 0;
    let rawCpu = Infinity;
    let sharedCpu = Infinity;
    // Interleaved, best of `reps` each: the same machine state for both paths.
    for (let k = 0; k < reps; k++) {
      const r = await rawRun(server.url, total);
      raw = Math.max(raw, r.msgsPerS);
      rawCpu = Math.min(rawCpu, r.cpuUsPerMsg);
      const s = await sharedRun(server.url, ranks, passesPerRank);
      shared = Math.max(shared, s.msgsPerS);
      sharedCpu = Math.min(sharedCpu, s.cpuUsPerMsg);
      dropped += s.dropped;
    }
    process.stdout.write(
      JSON.stringify({
        bench: 'publisher',
        shared_msgs_per_s: Math.round(shared),
        raw_msgs_per_s: Math.round(raw),
        ratio: Number((shared / raw).toFixed(3)),
        // CPU of the one thread that calls nats.js (publisher thread vs the raw loop), best rep
        shared_publisher_cpu_us_per_msg: Number(sharedCpu.toFixed(3)),
        raw_cpu_us_per_msg: Number(rawCpu.toFixed(3)),
        cpu_ratio: Number((rawCpu / sharedCpu).toFixed(3)),
        messages: total,
        ranks,
        reps,
        fpm_per_kv_events: `1:${KV_PER_PASS}`,
        dropped,
        node: process.version,
      }) + '\n',
    );
  } finally {
    await server.stop();
  }
}

if (isMainThread) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench/publisher: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
} else {
  const d = workerData as { role: string; job: RankJob };
  if (d.role !== 'rank') throw new Error(`bench/publisher: unknown worker role ${d.role}`);
  rankMain(d.job);
}
