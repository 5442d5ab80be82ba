/**
 * Starts a private nats-server for a test or benchmark: `nats-server -a 127.0.0.1 -p -1` (random
 * port; `-p 0` would bind 4222), port read from its stderr, early exit raced so a missing binary
 * fails with a clear message. Servers still running when the process exits are killed.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

const LISTEN_RE = /Listening for client connections on [^\s]*:(\d+)/;
const START_TIMEOUT_MS = 10_000;

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface NatsServer {
  readonly port: number;
  readonly url: string;
  /** True between a successful start/restart and stop(). */
  readonly running: boolean;
  /** Kills the server (SIGKILL when `hard`, else SIGTERM) and waits for it to exit. */
  stop(hard?: boolean): Promise<void>;
  /** Starts the server again on the same port (after stop()). */
  restart(): Promise<void>;
}

function launch(port: number): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      reject(new Error(`cannot spawn nats-server: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    live.add(child);
    let stderr = '';
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`nats-server did not report a listening port within ${START_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, START_TIMEOUT_MS);
    child.once('error', (err: NodeJS.ErrnoException) => {
      live.delete(child);
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(
        new Error(
          err.code === 'ENOENT'
            ? 'nats-server is not installed or not on PATH (apt-get install nats-server, or scripts/ensure-system-deps.sh)'
            : `nats-server failed to start: ${err.message}`,
        ),
      );
    });
    child.once('exit', (code, signal) => {
      live.delete(child);
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`nats-server exited early (code ${code}, signal ${signal}); stderr:\n${stderr}`));
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (settled) return;
      stderr += chunk;
      const m = LISTEN_RE.exec(stderr);
      if (m !== null) {
        settled = true;
        clearTimeout(timer);
        // Keep draining stderr so the server never blocks on a full pipe.
        child.stderr!.resume();
        resolve({ child, port: Number(m[1]) });
      }
    });
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startNatsServer(opts: { port?: number } = {}): Promise<NatsServer> {
  const first = await launch(opts.port ?? -1);
  let child: ChildProcess | null = first.child;
  const port = first.port;
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    get running() {
      return child !== null;
    },
    async stop(hard = false) {
      const c = child;
      if (c === null) return;
      child = null;
      const exited = waitExit(c);
      c.kill(hard ? 'SIGKILL' : 'SIGTERM');
      await exited;
    },
    async restart() {
      if (child !== null) throw new Error('nats-server is still running; stop() it first');
      const next = await launch(port);
      child = next.child;
    },
  };
}
