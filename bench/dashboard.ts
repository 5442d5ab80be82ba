/**
 * What the live dashboard costs. Prints one JSON line:
 * - micro: DashboardModel.sample() (the always-on 1 s history sampler) and .tick() (built once
 *   per tick while a page is open) at 16, 256 and 4096 ranks, µs per call, and the tick's JSON size;
 *   sample() with every rank active before it (sampleAllRanksActiveUs: the cost of every sample
 *   before the samplers visited only changed ranks);
 * - serve: CPU of an idle `mockfleet serve` (whole process and its main thread, from
 *   /proc/<pid>/stat utime+stime, 10 ms resolution) over --phase-s second phases: closed,
 *   1 stream open, closed, 8 streams open, closed. Skipped ("serve": null) with --no-serve.
 *
 * Usage: npm run -s build && node dist/bench/dashboard.js [--workers 4] [--dp 4] [--phase-s 10] [--no-serve]
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import type { ClientRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { counterLayout, observe, Scalar } from '../src/protocol/rank-counters.js';
import type { CounterLayout } from '../src/protocol/rank-counters.js';
import type { DashboardRankInfo, DashboardSource } from '../src/dashboard/source.js';
import { DashboardModel } from '../src/dashboard/model.js';
import { parseReadyLine } from '../src/cli/ready.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
}

class SyntheticSource implements DashboardSource {
  readonly modelName = 'bench';
  readonly numWorkers: number;
  readonly dataParallelSize = 1;
  readonly config = { speedupRatio: 1, router: 'round-robin', natsUrl: null };
  readonly layout: CounterLayout = counterLayout(8192);
  readonly counters: Float64Array[] = [];
  private readonly info: DashboardRankInfo[] = [];
  constructor(readonly numRanks: number) {
    this.numWorkers = numRanks;
    for (let r = 0; r < numRanks; r++) {
      this.counters.push(new Float64Array(this.layout.floatsPerRank));
      this.info.push({ rank: r, workerIndex: r, dpRank: 0, workerId: BigInt(r + 1), cpu: r % 8, tid: 1000 + r });
    }
  }
  step(i: number): void {
    for (let r = 0; r < this.numRanks; r++) {
      const c = this.counters[r] as Float64Array;
      c[Scalar.passes] = (c[Scalar.passes] as number) + 1;
      c[Scalar.generationTokens] = (c[Scalar.generationTokens] as number) + 50;
      c[Scalar.successLength] = (c[Scalar.successLength] as number) + 1;
      c[Scalar.kvUsage] = ((i + r) % 100) / 100;
      c[Scalar.running] = (i + r) % 16;
      observe(c, 0, this.layout.ttft, 0.01 + ((i * 7 + r) % 50) / 1000);
      observe(c, 0, this.layout.itl, 0.01 + ((i * 3 + r) % 20) / 1000);
    }
  }
  ranks(): readonly DashboardRankInfo[] {
    return this.info;
  }
  rankRestarts(): number {
    return 0;
  }
  publisherHandle(): null {
    return null;
  }
}

function micro(numRanks: number): { ranks: number; sampleUs: number; sampleAllRanksActiveUs: number; tickUs: number; tickBytes: number; initBytes: number } {
  const src = new SyntheticSource(numRanks);
  let t = 1_700_000_000_000;
  const model = new DashboardModel(src, { now: () => t });
  for (let i = 0; i < 400; i++) {
    src.step(i);
    t += 1000;
    model.sample();
  }
  // Best of 5 rounds: the figure of interest is the work itself, not scheduler noise on a shared host.
  const n = 500;
  let sampleUs = Infinity;
  let tickUs = Infinity;
  let tick = '';
  for (let round = 0; round < 5; round++) {
    let s0 = performance.now();
    for (let i = 0; i < n; i++) {
      t += 1000;
      model.sample();
    }
    sampleUs = Math.min(sampleUs, ((performance.now() - s0) * 1000) / n);
    s0 = performance.now();
    for (let i = 0; i < n; i++) tick = model.tick(2);
    tickUs = Math.min(tickUs, ((performance.now() - s0) * 1000) / n);
  }
  // Every rank active before each sample (what every sample cost before samplers visited only
  // changed ranks): step + sample minus step alone.
  let busyUs = Infinity;
  const m = 50;
  for (let round = 0; round < 3; round++) {
    let s0 = performance.now();
    for (let i = 0; i < m; i++) src.step(i);
    const stepMs = performance.now() - s0;
    s0 = performance.now();
    for (let i = 0; i < m; i++) {
      src.step(i);
      t += 1000;
      model.sample();
    }
    busyUs = Math.min(busyUs, ((performance.now() - s0 - stepMs) * 1000) / m);
  }
  return { ranks: numRanks, sampleUs: round(sampleUs), sampleAllRanksActiveUs: round(Math.max(0, busyUs)), tickUs: round(tickUs), tickBytes: tick.length, initBytes: model.init(tick, 500).length };
}

function round(v: number): number {
  return Number(v.toPrecision(3));
}

function clockTicksPerSecond(): number {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const v = Number(r.stdout.trim());
  if (r.status !== 0 || !Number.isInteger(v) || v <= 0) throw new Error(`getconf CLK_TCK failed: ${r.stderr || r.stdout}`);
  return v;
}
const CLK_TCK = clockTicksPerSecond();
function cpuMs(path: string): number {
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

async function serveBench(workers: number, dp: number, phaseS: number): Promise<Record<string, unknown>> {
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--num-workers', String(workers), '--data-parallel-size', String(dp)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const ready = await new Promise<{ url: string; pid: number }>((resolve, reject) => {
    let out = '';
    const guard = setTimeout(() => reject(new Error(`serve not ready in 60 s: ${stderr}`)), 60_000);
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const r = parseReadyLine<{ url: string; pid: number }>(out);
      if (r !== null) {
        clearTimeout(guard);
        resolve(r);
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  const proc = `/proc/${ready.pid}/stat`;
  const main = `/proc/${ready.pid}/task/${ready.pid}/stat`;
  const streams: ClientRequest[] = [];
  const open = (n: number): Promise<void> =>
    Promise.all(
      Array.from({ length: n }, () =>
        new Promise<void>((resolve, reject) => {
          const req = get(`${ready.url}/dashboard/events`, (res) => {
            res.once('data', () => resolve());
            res.resume();
          });
          req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
          streams.push(req);
        }),
      ),
    ).then(() => undefined);
  const closeAll = (): void => {
    for (const s of streams.splice(0)) s.destroy();
  };
  const phase = async (): Promise<{ processCpuMsPerS: number; mainCpuMsPerS: number }> => {
    const p0 = cpuMs(proc);
    const m0 = cpuMs(main);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, phaseS * 1000));
    const dt = (performance.now() - t0) / 1000;
    return { processCpuMsPerS: round((cpuMs(proc) - p0) / dt), mainCpuMsPerS: round((cpuMs(main) - m0) / dt) };
  };
  const stats = async (): Promise<Record<string, number>> => (await (await fetch(`${ready.url}/dashboard/stats`)).json()) as Record<string, number>;
  try {
    // Start-up work (JIT, first passes, publisher connect) settles before measuring.
    await new Promise((r) => setTimeout(r, 5000));
    const closed = await phase();
    await open(1);
    const open1 = await phase();
    closeAll();
    await new Promise((r) => setTimeout(r, 200));
    const closed2 = await phase();
    await open(8);
    const open8 = await phase();
    closeAll();
    await new Promise((r) => setTimeout(r, 200));
    const closed3 = await phase();
    const s = await stats();
    return {
      ranks: workers * dp,
      phaseS,
      closed: [closed, closed2, closed3],
      open1,
      open8,
      dashboard: {
        ticks: s['ticks'],
        tickBuildUs: round(((s['tickBuildMsTotal'] as number) * 1000) / Math.max(1, s['ticks'] as number)),
        lastTickBytes: s['lastTickBytes'],
        samples: s['samples'],
        sampleUs: round(((s['sampleMsTotal'] as number) * 1000) / Math.max(1, s['samples'] as number)),
        subscribersAfterClose: s['subscribers'],
      },
    };
  } finally {
    closeAll();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

const workers = arg('workers', 4);
const dp = arg('dp', 4);
const phaseS = arg('phase-s', 10);
const result = {
  bench: 'dashboard',
  node: process.version,
  micro: [micro(16), micro(256), micro(4096)],
  serve: process.argv.includes('--no-serve') ? null : await serveBench(workers, dp, phaseS),
};
process.stdout.write(`${JSON.stringify(result)}\n`);
