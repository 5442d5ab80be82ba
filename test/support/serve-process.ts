/**
 * Spawns `node dist/src/cli/main.js serve ...` for end-to-end tests and waits for its
 * `mockfleet ready {json}` line. stop() sends SIGTERM and resolves with the exit code.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface ReadyInfo {
  url: string;
  metrics: string;
  model: string;
  workers: number;
  ranks: number;
  worker_ids: string[];
  worker_urls: string[];
  nats: string | null;
  pid: number;
  placement: Array<{ thread: string; tid: number | null; cpus: number[] | null }>;
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly ready: ReadyInfo;
  stderr(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code once the process ended on its own (no signal sent). */
  exited(): Promise<number | null>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export function runCli(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mockfleet ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

export function startServe(args: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<ServeProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let settled = false;
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => {
      live.delete(child);
      res(code);
    }));
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`serve not ready within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    void exited.then((code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code} before ready; stderr:\n${stderr}`));
    });
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      // Only a complete line: at thousands of ranks the ready line arrives in several chunks.
      const m = /^mockfleet ready (.*)\n/m.exec(stdout);
      if (m === null || settled) return;
      settled = true;
      clearTimeout(timer);
      const ready = JSON.parse(m[1] as string) as ReadyInfo;
      resolve({
        child,
        ready,
        stderr: () => stderr,
        exited: () => exited,
        async stop(signal: NodeJS.Signals = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    });
  });
}
