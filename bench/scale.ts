/**
 * bench:scale — how big a fleet one host holds while idle: for each fleet size, start
 * `mockfleet serve --num-workers N`, then measure
 *   ready_s          spawn → the `mockfleet ready` line
 *   rss_mib          serve's VmRSS after it settled (idle, 2 s after ready, before any scrape;
 *                    rss_after_scrapes_mib includes the scrape's kept histogram bytes)
 *   idle_cpu_cores   serve's CPU (all threads) over --idle-seconds of idling ÷ wall time, also
 *                    split by thread role (main, publisher, ranks, other = V8/libuv helpers)
 *   scrape_s         one GET /metrics (median of 3), and its size
 *   promtool         problems `promtool check metrics` reports beyond the lint on vLLM's own names
 *
 *   node dist/bench/scale.js [--sizes 1024,4096] [--ranks-per-thread auto] [--idle-seconds 5]
 *
 * Prints one JSON line with one entry per size. Sizes run one after the other in fresh processes.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuByRole, cpuMs, root, spawnReady, stop, threadCpuMs, threadRoles } from './lib/process.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1024,4096' },
    'ranks-per-thread': { type: 'string', default: 'auto' },
    'idle-seconds': { type: 'string', default: '5' },
  },
});
const sizes = values.sizes.split(',').map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new RangeError(`--sizes must be positive integers, got ${values.sizes}`);
const idleS = Number(values['idle-seconds']);
if (!(idleS > 0)) throw new RangeError(`--idle-seconds must be > 0, got ${values['idle-seconds']}`);

function get(url: string): Promise<{ body: string; seconds: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      // agent false: Node 20's global agent drops sockets idle for 5 s, and a cold 4096-rank scrape can take longer on a busy host.
      .get(url, { agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`GET ${url}: ${res.statusCode}`));
          else resolve({ body: Buffer.concat(chunks).toString('utf8'), seconds: (performance.now() - t0) / 1000 });
        });
      })
      .on('error', reject);
  });
}

function rssMib(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return Math.round(kb / 1024);
}

/** promtool's findings minus the two lint kinds vLLM's own names always produce (see README, Prometheus). */
function promtoolProblems(text: string): string[] {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.error !== undefined) throw r.error;
  return `${r.stdout}\n${r.stderr}`
    .split('\n')
    .filter((l) => l.trim() !== '')
    .filter((l) => !/^vllm:\S+ (metric names should not contain ':'|non-counter metrics should not have "_total" suffix)$/.test(l));
}

async function measure(ranks: number): Promise<Record<string, unknown>> {
  process.stderr.write(`bench:scale: starting ${ranks} ranks\n`);
  const t0 = performance.now();
  const { child, info } = await spawnReady(
    [join(root, 'dist/src/cli/main.js'), 'serve', '--port', '0', '--num-workers', String(ranks), '--ranks-per-thread', values['ranks-per-thread']],
    'mockfleet ready',
    180_000,
  );
  const readyS = (performance.now() - t0) / 1000;
  try {
    const pid = child.pid as number;
    const url = String(info['url']);
    await new Promise((r) => setTimeout(r, 2000));
    const rss = rssMib(pid);
    // Roles from a labels-only read of the placement series (the full scrape comes after the idle window).
    const roles = threadRoles((await get(new URL('/metrics', url).href)).body);
    await new Promise((r) => setTimeout(r, 1000));
    const threads0 = threadCpuMs(pid);
    const cpu0 = cpuMs(pid);
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, idleS * 1000));
    const wallMs = performance.now() - w0;
    const idleCores = (cpuMs(pid) - cpu0) / wallMs;
    const byRole = cpuByRole(threads0, threadCpuMs(pid), roles);
    for (const k of Object.keys(byRole)) byRole[k] = Number(((byRole[k] as number) / wallMs).toFixed(3));
    const scrapes: number[] = [];
    let text = '';
    // The first scrape above built the per-rank histogram bytes; these are the steady-state ones.
    for (let i = 0; i < 3; i++) {
      const r = await get(new URL('/metrics', url).href);
      scrapes.push(r.seconds);
      text = r.body;
    }
    scrapes.sort((a, b) => a - b);
    const rssAfterScrapes = rssMib(pid);
    const problems = promtoolProblems(text);
    return {
      ranks,
      threads: typeof info['threads'] === 'number' ? info['threads'] : null,
      ready_s: Number(readyS.toFixed(2)),
      rss_mib: rss,
      rss_after_scrapes_mib: rssAfterScrapes,
      idle_cpu_cores: Number(idleCores.toFixed(3)),
      idle_cpu_cores_by_thread: byRole,
      scrape_s: Number((scrapes[1] as number).toFixed(3)),
      scrape_mib: Number((text.length / 1048576).toFixed(1)),
      promtool_problems: problems.length,
      ...(problems.length > 0 ? { promtool_first: problems.slice(0, 3) } : {}),
    };
  } finally {
    await stop(child);
  }
}

const results: Array<Record<string, unknown>> = [];
for (const n of sizes) results.push(await measure(n));
console.log(JSON.stringify({ bench: 'scale', ranks_per_thread: values['ranks-per-thread'], results, node: process.version }));
