/**
 * Real parts for fleet tests and benchmarks: a nats-server cluster on loopback (client ports
 * `-p -1`, route ports picked free at run time) and spawned `mockfleet worker` / `serve --fleet`
 * processes that fail fast with their stderr when they exit before their ready line.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { CLI } from './serve-process.js';
import { parseReadyLine } from '../../src/cli/ready.js';
import { freePort } from './ports.js';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface NatsNode {
  readonly name: string;
  readonly url: string;
  readonly child: ChildProcess;
  kill(): Promise<void>;
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** n nats-servers routed to each other; resolves once every node has a route to every other. */
export async function startNatsCluster(n: number, timeoutMs = 10_000): Promise<NatsNode[]> {
  const routePorts: number[] = [];
  for (let i = 0; i < n; i++) routePorts.push(await freePort());
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
  const starts = routePorts.map((port, i) => new Promise<NatsNode>((resolve, reject) => {
    const name = `mf-node${i}`;
    const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', '-1', '-n', name, '--cluster_name', 'mockfleet-test', '--cluster', `nats://127.0.0.1:${port}`, '--routes', routes], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    let stderr = '';
    let url = '';
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`nats-server ${name} did not join the cluster within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`cannot start nats-server: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      live.delete(child);
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`nats-server ${name} exited early (code ${code}, signal ${signal}); stderr:\n${stderr}`));
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (settled) return;
      stderr += chunk;
      const m = /Listening for client connections on [^\s]*:(\d+)/.exec(stderr);
      if (m !== null) url = `nats://127.0.0.1:${m[1]}`;
      const routesUp = new Set([...stderr.matchAll(/Route connection created/g)].map((x) => x.index)).size;
      if (url !== '' && routesUp >= n - 1) {
        settled = true;
        clearTimeout(timer);
        resolve({
          name,
          url,
          child,
          kill: async () => {
            child.kill('SIGKILL');
            await exitOf(child);
          },
        });
      }
    });
  }));
  try {
    return await Promise.all(starts);
  } catch (err) {
    for (const c of live) c.kill('SIGKILL');
    throw err;
  }
}

export interface FleetProcess {
  readonly child: ChildProcess;
  readonly ready: Record<string, unknown> & { url: string; pid: number };
  stderr(): string;
  /** SIGTERM (or the given signal); resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawn `mockfleet <args>` and wait for its `mockfleet ready {json}` line. */
export function spawnMockfleet(args: string[], timeoutMs = 30_000): Promise<FleetProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`mockfleet ${args.join(' ')}: ${why}; stderr:\n${stderr}`));
    };
    const timer = setTimeout(() => fail(`no ready line within ${timeoutMs} ms`), timeoutMs);
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code, signal) => {
      live.delete(child);
      fail(`exited early (code ${code}, signal ${signal})`);
    });
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (settled) return;
      const ready = parseReadyLine<FleetProcess['ready']>(stdout);
      if (ready === null) return;
      settled = true;
      clearTimeout(timer);
      resolve({
        child,
        ready,
        stderr: () => stderr,
        stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          const done = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
          child.kill(signal);
          return done;
        },
      });
    });
  });
}

/** Run `mockfleet <args>` to completion (for commands expected to fail fast). */
export function runMockfleet(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mockfleet ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr:\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, stderr });
    });
  });
}

/** Poll `check` every 50 ms until it returns a value other than undefined. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
