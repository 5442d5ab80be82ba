/**
 * A real Prometheus server scraping one target, for end-to-end tests: starts `prometheus` on a
 * free loopback port with a temporary config and TSDB, and waits (bounded) for its first
 * successful scrape. A Prometheus that exits early or never scrapes fails the wait with its
 * stderr tail.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { TestChild } from './child.js';

export interface TargetHealth {
  health: string;
  lastError: string;
  lastScrapeDuration: number;
}

export interface PrometheusServer {
  readonly url: string;
  /** The target's state from /api/v1/targets (null until Prometheus lists it). */
  target(): Promise<TargetHealth | null>;
  /** An instant query's first value (null = empty result). */
  query(expr: string): Promise<number | null>;
  /** Resolves once the target was scraped successfully, or rejects with its last error. */
  waitUp(timeoutMs: number): Promise<TargetHealth>;
  stop(): Promise<void>;
}

/** Scrapes `metricsUrl` (http://host:port/path) every `intervalS` seconds. */
export async function startPrometheus(metricsUrl: string, intervalS = 1): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-prom-'));
  const u = new URL(metricsUrl);
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      `  scrape_interval: ${intervalS}s`,
      `  scrape_timeout: ${intervalS}s`,
      'scrape_configs:',
      '  - job_name: mockfleet',
      `    metrics_path: ${u.pathname}`,
      '    static_configs:',
      `      - targets: ['${u.host}']`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const child = new TestChild('prometheus', [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ]);
  const url = `http://127.0.0.1:${port}`;
  const api = async (path: string): Promise<unknown> => {
    const res = await fetch(`${url}${path}`);
    if (!res.ok) throw new Error(`prometheus ${path}: HTTP ${res.status}`);
    return ((await res.json()) as { data: unknown }).data;
  };
  const target = async (): Promise<TargetHealth | null> => {
    const data = (await api('/api/v1/targets')) as { activeTargets: TargetHealth[] };
    return data.activeTargets[0] ?? null;
  };
  return {
    url,
    target,
    async query(expr) {
      const data = (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as { result: Array<{ value: [number, string] }> };
      const first = data.result[0];
      return first === undefined ? null : Number(first.value[1]);
    },
    async waitUp(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let last: TargetHealth | null = null;
      let lastErr = '';
      while (Date.now() < deadline) {
        if (child.exitStatus() !== null) throw new Error(`prometheus exited early; stderr: ${child.stderrTail()}`);
        try {
          last = await target();
          if (last !== null && last.health === 'up') return last;
        } catch (e) {
          lastErr = e instanceof Error ? e.message : String(e); // not listening yet
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`prometheus: no successful scrape of ${metricsUrl} in ${timeoutMs} ms (target ${JSON.stringify(last)}, ${lastErr}); stderr: ${child.stderrTail()}`);
    },
    async stop() {
      try {
        await child.stop('SIGTERM', 10_000);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
