/**
 * Thread entry of the shared event publisher: pin (optional), connect NATS in the background,
 * then loop { drain every rank ring; yield } until asked to close. See src/transport/README.md.
 */
import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { Doorbell } from '../src/protocol/ring.js';
import { EventsFileWriter } from '../src/transport/events-file.js';
import { EmbeddedSink, NatsSink, PublisherCore } from '../src/transport/publisher-core.js';
import type { PublisherSink } from '../src/transport/publisher-core.js';
import { ZmqKvPublisher } from '../src/transport/zmq-publisher.js';
import type { MainToPublisher, PublisherToMain, PublisherWorkerData } from '../src/transport/publisher.js';
import { Stat } from '../src/transport/stats.js';
import { MockfleetError } from '../src/util/errors.js';

/**
 * Events may reach NATS up to this much later than their pass start; it bounds wake-ups to ~1/ms.
 * While drains find records the publisher drains on this cadence without waiting on the doorbell,
 * so the bell's waiting flag stays clear and ranks never pay a futex wake for it.
 */
const GATHER_MS = 1;
/** The same when nothing reads the envelopes (PublisherCore.countOnly): only the counters wait. */
const COUNT_ONLY_GATHER_MS = 10;
/** Idle wait between drain passes when no rank rang the doorbell. */
const IDLE_WAIT_MS = 50;
/** Round-trip to NATS after this many published bytes, bounding what sits in socket buffers. */
const FLUSH_EVERY_BYTES = 4 << 20;
/**
 * Records published between yields to the event loop (which lets nats.js write its batch). A
 * yield also rewinds the 64 KiB arena, so this many typical records (FPM ~200 B) must fit in it:
 * past that every drain allocated fresh arenas (half the publisher's CPU at 40 K passes/s).
 */
const YIELD_EVERY = 256;
const FLUSH_TIMEOUT_MS = 2000;

const port = parentPort;
if (port === null) throw new Error('publisher-worker must run as a worker thread');
const d = workerData as PublisherWorkerData;

function post(m: PublisherToMain): void {
  port!.postMessage(m);
}

function fatal(err: unknown): never {
  const e = err instanceof Error ? err : new Error(String(err));
  post({ type: 'fatal', code: e instanceof MockfleetError ? e.code : e.name, message: e.message, stack: e.stack ?? '' });
  process.exit(1);
}

function threadId(): number | null {
  const link = readlinkSync('/proc/thread-self');
  const tid = Number(link.slice(link.lastIndexOf('/') + 1));
  return Number.isInteger(tid) ? tid : null;
}

async function main(): Promise<void> {
  const tid = threadId();
  let pinnedCpus: string | null = null;
  if (d.cpus !== null && d.cpus.length > 0) {
    const list = d.cpus.join(',');
    if (tid === null) {
      post({ type: 'warning', message: `cannot pin the publisher to CPUs ${list}: thread id unknown` });
    } else {
      try {
        execFileSync('taskset', ['-p', '-c', list, String(tid)], { stdio: 'pipe' });
        pinnedCpus = list;
      } catch (err) {
        post({ type: 'warning', message: `cannot pin the publisher thread ${tid} to CPUs ${list}: ${err instanceof Error ? err.message : String(err)}` });
      }
    }
  }

  let core: PublisherCore | null = null;
  let sink: PublisherSink;
  let nats: NatsSink | null = null;
  if (d.natsUrl !== null) {
    nats = new NatsSink(
      d.natsUrl,
      (status, detail) => {
        if (core !== null) {
          if (status === 'disconnected') core.bumpStat(Stat.disconnects);
          else if (status === 'reconnected') core.bumpStat(Stat.reconnects);
          core.storeStats();
        }
        post({ type: 'nats', status, detail });
      },
      fatal,
    );
    sink = nats;
  } else {
    sink = new EmbeddedSink();
  }
  // Bind every ZMQ socket before reporting ready: a port in use fails the start (exit 2).
  const zmq = d.zmq === null ? null : await ZmqKvPublisher.open(d.zmq, (err) => post({ type: 'warning', message: `ZMQ: ${err.message}` }));
  const eventsFile = d.eventsFile !== null ? new EventsFileWriter(d.eventsFile) : null;
  core = new PublisherCore({
    rings: d.rings,
    doorbell: d.doorbell,
    rankWorkerIds: d.rankWorkerIds,
    namespace: d.namespace,
    component: d.component,
    endpoint: d.endpoint,
    dynamoWire: d.dynamoWire,
    zmq,
    natsVllm: d.natsVllm,
    sink,
    stats: d.stats,
    eventsFile,
    maxBufferedBytes: d.maxBufferedBytes,
    onPublishError: (err) => post({ type: 'warning', message: `NATS publish failed, message dropped: ${err instanceof Error ? err.message : String(err)}` }),
  });
  core.storeStats();
  if (nats !== null) nats.start();

  const bell = new Doorbell(d.doorbell);
  const gatherMs = core.countOnly ? COUNT_ONLY_GATHER_MS : GATHER_MS;
  let closeTimeoutMs = -1;
  // This listener also keeps the thread alive while it only awaits Atomics.waitAsync.
  port!.on('message', (m: MainToPublisher) => {
    if (m.type === 'close') closeTimeoutMs = m.timeoutMs;
  });
  post({ type: 'ready', tid, pinnedCpus });

  let sinceFlush = 0;
  let sinceYield = 0;
  // At most one flush in flight: it is awaited only when the next one is due, so the round trip
  // overlaps publishing instead of stalling it, and at most ~2 x FLUSH_EVERY_BYTES are unacked.
  let inFlight: Promise<boolean> | null = null;
  for (;;) {
    const n = core.drainPass();
    if (n > 0) {
      sinceFlush += core.takeBytesSinceFlush();
      sinceYield += n;
      if (sinceFlush >= FLUSH_EVERY_BYTES) {
        sinceFlush = 0;
        if (inFlight !== null && !(await inFlight)) core.bumpStat(Stat.flushFailures);
        inFlight = sink.connected ? sink.flush(FLUSH_TIMEOUT_MS) : null;
      }
      if (core.moreWaiting) {
        if (sinceYield >= YIELD_EVERY) {
          sinceYield = 0;
          await yieldToLoop();
          core.recycleArena();
        }
        continue;
      }
      sinceYield = 0;
      if (closeTimeoutMs < 0) {
        await bell.waitUrgent(gatherMs);
        core.recycleArena();
        continue;
      }
      await yieldToLoop();
      core.recycleArena();
      continue;
    }
    sinceYield = 0;
    if (closeTimeoutMs >= 0) break;
    await bell.wait(IDLE_WAIT_MS);
    core.recycleArena();
    // Gather for a moment before draining: with hundreds of ranks each pass would otherwise wake
    // this thread on its own (a futex wake and a context switch per pass). Meanwhile the
    // doorbell's waiting flag is clear, so ranks skip the notify altogether.
    if (closeTimeoutMs < 0) await bell.waitUrgent(gatherMs);
  }
  if (inFlight !== null && !(await inFlight)) core.bumpStat(Stat.flushFailures);

  // Closing: the ranks have stopped; give a disconnected NATS until the deadline to return.
  const deadline = performance.now() + closeTimeoutMs;
  while (core.bufferedMessages > 0 && performance.now() < deadline) {
    core.drainPass();
    if (core.bufferedMessages > 0) await bell.wait(20);
  }
  core.dropBuffered();
  await sink.close(Math.max(1, deadline - performance.now()));
  if (zmq !== null) {
    // Let the last sends settle (their promises count them), then close the sockets.
    await yieldToLoop();
    core.storeStats();
    zmq.close();
  }
  if (eventsFile !== null) eventsFile.close();
  core.storeStats();
  post({ type: 'closed' });
  port!.close();
}

main().catch(fatal);
