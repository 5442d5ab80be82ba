/**
 * Platform wake-up probe: a worker thread that sleeps like a rank thread (a timed Atomics.wait
 * that nobody notifies, 1–6.5 ms) and records how late each wait returns after its timeout.
 * Run next to a fleet, it measures the timer wake-up latency the fleet's rank threads get from
 * the same machine at the same time — the floor under pass lateness that no rank code can lower
 * without spinning.
 *
 * This module is both sides: the bench imports startWakeProbe(); the worker loads this same file
 * and runs probeLoop() (selected by its workerData).
 */
import { Worker, isMainThread, workerData } from 'node:worker_threads';

/** Sleeps cycle deterministically over 1, 1.25, …, 6.5 ms: the spread of a rank thread's waits
 * (~6.45 ms pass deadlines, shortened by the service round and the deadlines of other ranks). */
const SLEEP_MIN_MS = 1;
const SLEEP_STEP_MS = 0.25;
const SLEEP_STEPS = 23;
/** One wait takes ≥ 1 ms, so this holds ≥ 1000 s of probing; the probe stops when it is full. */
const MAX_SAMPLES = 1 << 20;

const STOP = 0;
const COUNT = 1;

interface ProbeData {
  readonly wakeProbe: true;
  /** Int32 words: STOP flag, COUNT of recorded waits. */
  readonly control: SharedArrayBuffer;
  /** Float64 lateness of each wait, ms. */
  readonly samples: SharedArrayBuffer;
}

function isProbeData(d: unknown): d is ProbeData {
  return typeof d === 'object' && d !== null && (d as { wakeProbe?: unknown }).wakeProbe === true;
}

function probeLoop(d: ProbeData): void {
  const control = new Int32Array(d.control);
  const samples = new Float64Array(d.samples);
  // Its own word, never notified: every wait ends by its timeout, as a rank thread's usually does.
  const never = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; Atomics.load(control, STOP) === 0 && i < MAX_SAMPLES; i++) {
    const sleepMs = SLEEP_MIN_MS + (i % SLEEP_STEPS) * SLEEP_STEP_MS;
    const t0 = performance.now();
    Atomics.wait(never, 0, 0, sleepMs);
    samples[i] = performance.now() - t0 - sleepMs;
    Atomics.store(control, COUNT, i + 1);
  }
}

if (!isMainThread && isProbeData(workerData)) probeLoop(workerData);

export interface WakeProbeResult {
  /** Waits recorded. */
  readonly waits: number;
  readonly lateP50Ms: number;
  readonly lateP99Ms: number;
  /** Fraction of waits that returned more than 2 ms after their timeout. */
  readonly lateOver2msRatio: number;
}

export interface WakeProbe {
  /** Ask the thread to stop after its current wait; resolves once it has exited. */
  stop(): Promise<WakeProbeResult>;
}

/** Nearest-rank quantile of sorted values. */
function quantileSorted(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

export function startWakeProbe(): WakeProbe {
  const data: ProbeData = {
    wakeProbe: true,
    control: new SharedArrayBuffer(8),
    samples: new SharedArrayBuffer(MAX_SAMPLES * 8),
  };
  const control = new Int32Array(data.control);
  const worker = new Worker(new URL(import.meta.url), { workerData: data });
  let failure: Error | undefined;
  const exited = new Promise<number>((resolve) => {
    worker.once('error', (err) => (failure = err));
    worker.once('exit', resolve);
  });
  return {
    async stop(): Promise<WakeProbeResult> {
      Atomics.store(control, STOP, 1);
      const code = await exited;
      if (failure !== undefined) throw failure;
      if (code !== 0) throw new Error(`wake probe thread exited with code ${code}`);
      const waits = Atomics.load(control, COUNT);
      if (waits === 0) throw new Error('wake probe recorded no waits');
      const late = new Float64Array(data.samples, 0, waits).slice().sort();
      let over = 0;
      for (const ms of late) if (ms > 2) over++;
      return { waits, lateP50Ms: quantileSorted(late, 0.5), lateP99Ms: quantileSorted(late, 0.99), lateOver2msRatio: over / waits };
    },
  };
}
