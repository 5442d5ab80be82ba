/**
 * bench:scale — how big a fleet one host holds while idle: for each fleet size, start
 * `mockfleet serve --num-workers N`, then measure
 *   ready_s          spawn → the `mockfleet ready` line
 *   rss_mib          serve's VmRSS after it settled (idle, 2 s after ready, before any scrape);
 *                    rss_after_scrapes_mib after the gzip scrapes (the chunk cache),
 *                    rss_after_identity_mib after the identity scrapes too
 *   idle_cpu_cores   serve's CPU (all threads) over --idle-seconds of idling ÷ wall time, also
 *                    split by thread role (main, publisher, ranks, other = V8/libuv helpers)
 *   scrape_s         what Prometheus sees: GET /metrics with `Accept-Encoding: gzip`, the whole
 *                    body read and decompressed, median of 3 after a warm-up scrape; its sizes
 *                    scrape_gzip_mib (on the wire) and scrape_mib (decompressed)
 *   scrape_identity_s  the same without Accept-Encoding (the text itself), median of 3
 *   scrape_busy_s    scrape_s while --busy-ranks ranks (the first ones, as in bench:pacing) each
 *                    decode one long request; scrape_busy_chunks = chunks recompressed per scrape
 *   promtool         problems `promtool check metrics` reports on the decompressed body beyond
 *                    the lint on vLLM's own names
 *
 *   node dist/bench/scale.js [--sizes 1024,4096] [--ranks-per-thread auto] [--idle-seconds 5] [--busy-ranks 256]
 *
 * Prints one JSON line with one entry per size. Sizes run one after the other in fresh processes.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createGunzip } from 'node:zlib';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuByRole, cpuMs, root, spawnReady, stop, threadCpuMs, threadRoles } from './lib/process.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '1024,4096' },
    'ranks-per-thread': { type: 'string', default: 'auto' },
    'idle-seconds': { type: 'string', default: '5' },
    'busy-ranks': { type: 'string', default: '256' },
  },
});
const sizes = values.sizes.split(',').map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new RangeError(`--sizes must be positive integers, got ${values.sizes}`);
const idleS = Number(values['idle-seconds']);
if (!(idleS > 0)) throw new RangeError(`--idle-seconds must be > 0, got ${values['idle-seconds']}`);
const busyRanks = Number(values['busy-ranks']);
if (!(Number.isInteger(busyRanks) && busyRanks >= 0)) throw new RangeError(`--busy-ranks must be an integer >= 0, got ${values['busy-ranks']}`);

interface Scrape {
  /** The decompressed text. */
  text: string;
  /** Bytes on the wire. */
  wireBytes: number;
  /** Request sent → body read and decompressed. */
  seconds: number;
  recompressed: number;
}

/**
 * One GET /metrics as Prometheus does it: the body decompressed while it arrives (Prometheus reads
 * it through Go's gzip reader), timed until the last byte is out of the decompressor. Turning it
 * into a string and reading the recompression counter is not timed.
 */
function scrape(url: string, gzip: boolean): Promise<Scrape> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      // agent false: Node 20's global agent drops sockets idle for 5 s, and a cold 4096-rank scrape can take longer on a busy host.
      .get(url, { agent: false, headers: gzip ? { 'accept-encoding': 'gzip' } : {} }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`GET ${url}: ${res.statusCode}`));
        if ((res.headers['content-encoding'] === 'gzip') !== gzip) return reject(new Error(`GET ${url}: content-encoding ${res.headers['content-encoding']}, asked gzip=${gzip}`));
        let wireBytes = 0;
        res.on('data', (c: Buffer) => (wireBytes += c.length));
        // 1 MiB output chunks: with zlib's default 16 KiB the per-chunk overhead of Node's stream
        // (not the inflate) dominates a 190 MiB body, and Go's reader has no such cost.
        const body = gzip ? res.pipe(createGunzip({ chunkSize: 1 << 20 })) : res;
        const chunks: Buffer[] = [];
        body.on('data', (c: Buffer) => chunks.push(c));
        body.on('end', () => {
          const seconds = (performance.now() - t0) / 1000;
          const text = Buffer.concat(chunks).toString('utf8');
          const m = /^mockfleet_metrics_chunks_recompressed_total\{[^}]*\} (\S+)$/m.exec(text.slice(text.lastIndexOf('# HELP mockfleet_metrics_chunks_recompressed_total')));
          resolve({ text, wireBytes, seconds, recompressed: Number(m?.[1] ?? NaN) });
        });
        body.on('error', reject);
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** Median of `n` scrapes; the last one's text and sizes; chunks recompressed per scrape. */
async function scrapes(url: string, gzip: boolean, n: number): Promise<{ seconds: number; last: Scrape; chunksPerScrape: number }> {
  const all: Scrape[] = [];
  for (let i = 0; i < n; i++) all.push(await scrape(url, gzip));
  const last = all[all.length - 1] as Scrape;
  const chunksPerScrape = (last.recompressed - (all[0] as Scrape).recompressed) / Math.max(1, n - 1);
  const sorted = all.map((s) => s.seconds).sort((a, b) => a - b);
  return { seconds: sorted[Math.floor(sorted.length / 2)] as number, last, chunksPerScrape };
}

/** Busy ranks as in bench:pacing: one long request pinned to each of the first `n` ranks. */
function startBusy(baseUrl: string, model: string, n: number): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets: n + 8 });
  const body = JSON.stringify({ model, prompt: Array.from({ length: 128 }, (_, i) => i + 1), max_tokens: 100000 });
  for (let r = 0; r < n; r++) {
    const req = http.request(new URL('/v1/completions', baseUrl), { method: 'POST', agent, headers: { 'content-type': 'application/json', 'x-mockfleet-rank': String(r) } }, (res) => res.resume());
    req.on('error', () => undefined); // cut when the bench ends the phase
    req.end(body);
  }
  return agent;
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
    const roles = threadRoles((await scrape(new URL('/metrics', url).href, true)).text);
    await new Promise((r) => setTimeout(r, 1000));
    const threads0 = threadCpuMs(pid);
    const cpu0 = cpuMs(pid);
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, idleS * 1000));
    const wallMs = performance.now() - w0;
    const idleCores = (cpuMs(pid) - cpu0) / wallMs;
    const byRole = cpuByRole(threads0, threadCpuMs(pid), roles);
    for (const k of Object.keys(byRole)) byRole[k] = Number(((byRole[k] as number) / wallMs).toFixed(3));
    const metricsUrl = new URL('/metrics', url).href;
    // The scrape above filled the chunk cache; these are the steady-state ones.
    await scrape(metricsUrl, true);
    const gz = await scrapes(metricsUrl, true, 3);
    const rssAfterScrapes = rssMib(pid);
    const identity = await scrapes(metricsUrl, false, 3);
    const rssAfterIdentity = rssMib(pid);
    const problems = promtoolProblems(gz.last.text);
    let busy: { seconds: number; chunksPerScrape: number } | null = null;
    if (busyRanks > 0) {
      const agent = startBusy(url, String(info['model']), Math.min(busyRanks, ranks));
      await new Promise((r) => setTimeout(r, 2000));
      await scrape(metricsUrl, true);
      const b = await scrapes(metricsUrl, true, 4);
      busy = { seconds: b.seconds, chunksPerScrape: b.chunksPerScrape };
      agent.destroy();
    }
    return {
      ranks,
      threads: typeof info['threads'] === 'number' ? info['threads'] : null,
      ready_s: Number(readyS.toFixed(2)),
      rss_mib: rss,
      rss_after_scrapes_mib: rssAfterScrapes,
      rss_after_identity_mib: rssAfterIdentity,
      idle_cpu_cores: Number(idleCores.toFixed(3)),
      idle_cpu_cores_by_thread: byRole,
      scrape_s: Number(gz.seconds.toFixed(3)),
      scrape_gzip_mib: Number((gz.last.wireBytes / 1048576).toFixed(2)),
      scrape_mib: Number((Buffer.byteLength(gz.last.text) / 1048576).toFixed(1)),
      scrape_identity_s: Number(identity.seconds.toFixed(3)),
      ...(busy === null ? {} : { busy_ranks: Math.min(busyRanks, ranks), scrape_busy_s: Number(busy.seconds.toFixed(3)), scrape_busy_chunks: Math.round(busy.chunksPerScrape) }),
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
