/**
 * Spawns `node dist/src/cli/main.js serve ...` for end-to-end tests and waits for its complete
 * `mockfleet ready {json}` line (the line can arrive in several chunks at large scale). A serve
 * that exits before it is ready, or is not ready in time, fails the wait with its stderr tail.
 * stop() sends SIGTERM and resolves with the exit code.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseReadyLine } from '../../src/cli/ready.js';
import { TestChild } from './child.js';

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

/** Runs the CLI to completion; rejects (after killing it) if it runs longer than `timeoutMs`. */
export async function runCli(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = new TestChild(process.execPath, [CLI, ...args]);
  try {
    const s = await c.waitExit(timeoutMs);
    return { code: s.code, stdout: c.stdout(), stderr: c.stderrTail() };
  } catch (e) {
    c.child.kill('SIGKILL');
    throw e;
  }
}

/** Spawns the CLI with `args` (a long-running command) without waiting for anything. */
export function spawnCli(args: string[], env: Record<string, string> = {}): TestChild {
  return new TestChild(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
}

export async function startServe(args: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<ServeProcess> {
  const c = spawnCli(['serve', '--port', '0', ...args], env);
  let ready: ReadyInfo;
  try {
    ready = await c.waitFor((out) => parseReadyLine<ReadyInfo>(out), 'ready line', timeoutMs);
  } catch (e) {
    c.child.kill('SIGKILL');
    throw e;
  }
  const exitCode = async (): Promise<number | null> => (await c.waitExit(60_000)).code;
  return {
    child: c.child,
    ready,
    stderr: () => c.stderrTail(),
    exited: exitCode,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      return (await c.stop(signal, 60_000)).code;
    },
  };
}
