/**
 * Shared publisher vs a raw nats.js publish loop, same nats-server, same run.
 *
 *   shared: R rank threads (RankEventWriter -> SPSC ring) -> publisher thread (envelope,
 *           sequence, cached subject) -> nats-server
 *   raw:    main thread publishes the same pre-encoded envelopes in batches of 1000
 *
 * Traffic: per simulated pass 12 KV events (8 stored of 1-2 blocks, 4 removed) + 1 FPM, one
 * RouterEvent per message (--dynamo-wire legacy: the message-rate worst case).
 *
 * ZMQ case (vLLM over ZMQ, --kv-events-config), same run:
 *   shared: R rank threads (one vLLM KVEventBatch record per pass, map encoding) -> publisher
 *           thread -> R XPUB sockets -> a live SUB socket (its own thread) reading every batch
 *   raw:    main thread sends the same pre-encoded batch frames on one zeromq XPUB socket with
 *           the same socket options -> the same kind of live subscriber
 *   The subscriber is a child process; rate = batches sent / time until it had the last one of
 *   every socket. Publisher and raw socket are set up once and reused by every rep.
 *
 * Prints one JSON line: {"bench":"publisher","shared_msgs_per_s","raw_msgs_per_s","ratio",
 * "shared_publisher_cpu_us_per_msg","raw_cpu_us_per_msg","cpu_ratio","zmq_shared_batches_per_s",
 * "zmq_raw_batches_per_s","zmq_ratio",...}: throughput (best of --reps, interleaved) and the CPU
 * time of the one thread that calls nats.js (from /proc), which is less sensitive to other load
 * on the host than wall-clock throughput.
 * Usage: node dist/bench/publisher.js [--messages N] [--ranks R] [--reps K] [--zmq-batches N]
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
// zeromq is loaded only by the threads that use it (main, subscriber), never by rank threads.
const zmq = async (): Promise<typeof import('zeromq')> => import('zeromq');
import type { ZmqPublishPlan } from '../src/config/kv-events-config.js';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect } from '@nats-io/transport-node';
import type { FpmSnapshot, KvEventLog } from '../src/engine/types.js';
import { KvEventKind } from '../src/engine/types.js';
import { RankEventWriter } from '../src/protocol/rank-events.js';
import { Doorbell, SpscRing } from '../src/protocol/ring.js';
import { TOPIC_NAMES, TopicCode, buildSubject } from '../src/protocol/topics.js';
import { MsgpackWriter, encodeEnvelope, encodeFpm, encodeRouterEvent, encodeVllmBatch, envelopeOverhead, msgpackStr, splitU64 } from '../src/protocol/wire.js';
import { startPublisher } from '../src/transport/publisher.js';
import { startNatsServer } from '../test/support/nats-server.js';
import { freePort } from '../test/support/ports.js';

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
  /** vLLM batches only (the ZMQ case), no FPM. */
  vllm: boolean;
}

/** Rank thread: wait for the start flag, then write `passes` x (12 KV events + 1 FPM) or x 1 vLLM batch. */
function rankMain(job: RankJob): void {
  const writer = new RankEventWriter(new SpscRing(job.ring), {
    workerId: job.workerId,
    dpRank: 0,
    kvEventsFormat: job.vllm ? 'vllm' : 'dynamo',
    vllmEncoding: 'map',
    dynamoWire: 'legacy',
    doorbell: new Doorbell(job.bell),
    blockTimeoutMs: 10_000,
  });
  const log = passLog(16);
  const go = new Int32Array(job.go);
  Atomics.wait(go, 0, 0);
  for (let p = 0; p < job.passes; p++) {
    log.firstEventId = p * KV_PER_PASS;
    writer.writeKvEvents(log, p);
    if (!job.vllm) writer.writeFpm(FPM, 0.012);
  }
  parentPort!.postMessage({ dropped: writer.droppedRecords });
}

async function sharedRun(url: string, ranks: number, passesPerRank: number): Promise<{ msgsPerS: number; dropped: number; cpuUsPerMsg: number }> {
  const rings = Array.from({ length: ranks }, () => SpscRing.allocate(1 << 20));
  const bell = Doorbell.allocate();
  const go = new SharedArrayBuffer(4);
  const ids = Array.from({ length: ranks }, (_, r) => 0x7000_0000_0000_0000n + BigInt(r));
  const pub = await startPublisher({ rings, doorbell: bell, rankWorkerIds: ids, rankDpRanks: ids.map(() => 0), natsUrl: url, namespace: NS, component: COMPONENT, dynamoWire: 'legacy', eventsFile: null });
  while (!pub.stats().natsConnected) await new Promise((r) => setTimeout(r, 5));
  const workers = rings.map((ring, r) => new Worker(new URL(import.meta.url), { workerData: { role: 'rank', job: { ring, bell, go, workerId: ids[r]!, passes: passesPerRank, vllm: false } } }));
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

/**
 * Subscriber process (fork, BENCH_ROLE=sub): SUB to every endpoint; done once seq `lastSeq`
 * arrived from every endpoint (batches sent before a subscription landed — ZMQ's slow joiner —
 * cannot delay the finish). A process of its own: zeromq sockets do not survive worker-thread
 * teardown well, and a separate process keeps the subscriber off the measured event loops.
 */
async function subscriberProcess(): Promise<void> {
  const { Subscriber } = await zmq();
  const job = await new Promise<{ endpoints: string[]; lastSeq: number }>((r) => process.once('message', r));
  const sub = new Subscriber({ receiveHighWaterMark: 0, linger: 0 });
  for (const e of job.endpoints) sub.connect(e);
  sub.subscribe('');
  process.send!({ ready: true });
  let n = 0;
  let ended = 0;
  for await (const frames of sub) {
    if (frames.length !== 3) throw new Error(`expected [topic, seq, payload], got ${frames.length} frames`);
    n++;
    if (Number(frames[1]!.readBigUInt64BE(0)) === job.lastSeq && ++ended === job.endpoints.length) break;
  }
  const at = performance.timeOrigin + performance.now();
  sub.close();
  process.send!({ received: n, at }, () => process.exit(0));
}

/** A live subscriber process; `done` resolves with the epoch ms at which it had every last seq. */
async function startSubscriber(endpoints: string[], lastSeq: number): Promise<{ done: Promise<number>; child: ChildProcess }> {
  const child = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, BENCH_ROLE: 'sub' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let readyResolve: () => void = () => {};
  let fail: (err: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    readyResolve = resolve;
    fail = reject;
  });
  const done = new Promise<number>((resolve, reject) => {
    child.on('message', (m: { ready?: boolean; at?: number }) => {
      if (m.ready === true) readyResolve();
      else if (m.at !== undefined) resolve(m.at);
    });
    child.once('exit', (code) => {
      const err = new Error(`subscriber process exited with ${code} before it was done`);
      fail(err);
      reject(err);
    });
  });
  done.catch(() => {}); // a failure before ready surfaces through `ready`
  child.send({ endpoints, lastSeq });
  await ready;
  await new Promise((r) => setTimeout(r, 300)); // ZMQ slow joiner
  return { done, child };
}

const HWM = 100_000;
/** A subscriber that misses its last seq (a drop) must not hang the bench. */
const RUN_TIMEOUT_MS = 120_000;

function within<T>(p: Promise<T>, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} did not finish within ${RUN_TIMEOUT_MS} ms`)), RUN_TIMEOUT_MS)))]).finally(() => clearTimeout(t));
}

/**
 * The shared path, set up once (one publisher thread with R XPUB sockets, like one serve
 * process); each run() starts R rank threads writing `passes` batches each and a fresh
 * subscriber, and times until the subscriber has every rank's last batch.
 */
async function zmqShared(ranks: number): Promise<{ run(passes: number): Promise<number>; close(): Promise<{ dropped: number }> }> {
  const rings = Array.from({ length: ranks }, () => SpscRing.allocate(1 << 20));
  const bell = Doorbell.allocate();
  const ids = Array.from({ length: ranks }, (_, r) => 0x7000_0000_0000_0000n + BigInt(r));
  const ports = await Promise.all(ids.map(() => freePort()));
  const plan: ZmqPublishPlan = { topic: '', bufferSteps: 1000, hwm: HWM, maxQueueSize: 100_000, ranks: ports.map((p, rank) => ({ rank, endpoint: `tcp://127.0.0.1:${p}`, replayEndpoint: null })) };
  const pub = await startPublisher({ rings, doorbell: bell, rankWorkerIds: ids, rankDpRanks: ids.map(() => 0), natsUrl: null, namespace: NS, component: COMPONENT, eventsFile: null, zmq: plan, natsVllm: false });
  let sent = 0; // batches per rank so far: the next run's seqs continue from here
  let rankDrops = 0;
  return {
    async run(passes: number): Promise<number> {
      const sub = await startSubscriber(plan.ranks.map((r) => r.endpoint), sent + passes - 1);
      const go = new SharedArrayBuffer(4);
      const workers = rings.map((ring, r) => new Worker(new URL(import.meta.url), { workerData: { role: 'rank', job: { ring, bell, go, workerId: ids[r]!, passes, vllm: true } } }));
      const done = workers.map((w) => new Promise<{ dropped: number }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      }));
      await new Promise((r) => setTimeout(r, 100)); // let the threads reach their start barrier
      const t0 = performance.timeOrigin + performance.now();
      Atomics.store(new Int32Array(go), 0, 1);
      Atomics.notify(new Int32Array(go), 0);
      const t1 = await within(sub.done, `ZMQ shared run (${pub.stats().zmq.dropped} dropped)`);
      for (const r of await Promise.all(done)) rankDrops += r.dropped;
      await Promise.all(workers.map((w) => w.terminate()));
      sent += passes;
      return (ranks * passes) / ((t1 - t0) / 1000);
    },
    async close(): Promise<{ dropped: number }> {
      await pub.flushAndClose(10_000);
      return { dropped: pub.stats().zmq.dropped + rankDrops };
    },
  };
}

/** The raw path: one zeromq XPUB in this thread with the same options, the same batch bytes. */
async function zmqRaw(): Promise<{ run(total: number): Promise<number>; close(): void }> {
  const w = new MsgpackWriter(1 << 16);
  encodeVllmBatch(w, 'map', 1.5, 0, passLog(16));
  const payload = w.buf.slice(0, w.pos);
  const topic = new Uint8Array(0);
  const port = await freePort();
  const { XPublisher } = await zmq();
  const pub = new XPublisher({ noDrop: true, sendHighWaterMark: HWM, sendTimeout: 0, linger: 0 });
  await pub.bind(`tcp://127.0.0.1:${port}`);
  void (async () => {
    for await (const _m of pub) {
      // subscription messages
    }
  })().catch(() => {});
  let seq = 0;
  return {
    async run(total: number): Promise<number> {
      const sub = await startSubscriber([`tcp://127.0.0.1:${port}`], seq + total - 1);
      let dropped = 0;
      const t0 = performance.timeOrigin + performance.now();
      for (let i = 0; i < total; i++, seq++) {
        const seqBytes = new Uint8Array(8);
        new DataView(seqBytes.buffer).setUint32(4, seq); // seq < 2^32 here
        pub.send([topic, seqBytes, payload.slice()]).catch(() => dropped++);
        if ((i & 1023) === 1023) await yieldToLoop();
      }
      const t1 = await within(sub.done, `ZMQ raw run (${dropped} dropped)`);
      return total / ((t1 - t0) / 1000);
    },
    close(): void {
      pub.close();
    },
  };
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

/** Progress on stderr with BENCH_DEBUG=1 (which stage a slow run is in). */
function stage(msg: string): void {
  if (process.env['BENCH_DEBUG'] !== undefined) process.stderr.write(`${new Date().toISOString()} ${msg}\n`);
}

async function main(): Promise<void> {
  const messages = arg('messages', 650_000);
  const ranks = arg('ranks', 2);
  const reps = arg('reps', 3);
  const zmqBatches = arg('zmq-batches', 60_000);
  const zmqPerRank = Math.ceil(zmqBatches / ranks);
  const passesPerRank = Math.ceil(messages / ranks / (KV_PER_PASS + 1));
  const total = passesPerRank * ranks * (KV_PER_PASS + 1);
  const server = await startNatsServer();
  try {
    stage('nats warm-up');
    await rawRun(server.url, 50_000); // warm-up (JIT, server)
    await sharedRun(server.url, ranks, 1000);
    let raw = 0;
    let shared = 0;
    let dropped = 0;
    let rawCpu = Infinity;
    let sharedCpu = Infinity;
    // Interleaved, best of `reps` each: the same machine state for both paths.
    for (let k = 0; k < reps; k++) {
      stage(`nats rep ${k}`);
      const r = await rawRun(server.url, total);
      raw = Math.max(raw, r.msgsPerS);
      rawCpu = Math.min(rawCpu, r.cpuUsPerMsg);
      const s = await sharedRun(server.url, ranks, passesPerRank);
      shared = Math.max(shared, s.msgsPerS);
      sharedCpu = Math.min(sharedCpu, s.cpuUsPerMsg);
      dropped += s.dropped;
    }
    stage('zmq warm-up');
    const zr = await zmqRaw();
    const zs = await zmqShared(ranks);
    await zr.run(5000);
    await zs.run(2500);
    let zRaw = 0;
    let zShared = 0;
    for (let k = 0; k < reps; k++) {
      stage(`zmq rep ${k}`);
      zRaw = Math.max(zRaw, await zr.run(zmqPerRank * ranks));
      zShared = Math.max(zShared, await zs.run(zmqPerRank));
    }
    zr.close();
    dropped += (await zs.close()).dropped;
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
        nats_wire: 'legacy',
        // vLLM KVEventBatch (map encoding, 12 events per batch) on ZMQ PUB, live subscriber
        zmq_shared_batches_per_s: Math.round(zShared),
        zmq_raw_batches_per_s: Math.round(zRaw),
        zmq_ratio: Number((zShared / zRaw).toFixed(3)),
        zmq_batches: zmqPerRank * ranks,
        dropped,
        node: process.version,
      }) + '\n',
    );
  } finally {
    await server.stop();
  }
}

if (isMainThread && process.env['BENCH_ROLE'] === 'sub') {
  subscriberProcess().catch((err: unknown) => {
    process.stderr.write(`bench/publisher subscriber: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
} else if (isMainThread) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench/publisher: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
} else {
  const d = workerData as { role: string; job: unknown };
  if (d.role === 'rank') rankMain(d.job as RankJob);
  else throw new Error(`bench/publisher: unknown worker role ${d.role}`);
}
