/**
 * Process helpers shared by the macro benchmarks: spawn a command that announces readiness with
 * one `<prefix> {json}` stdout line, stop it, and read its CPU time from /proc.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (bench/lib compiles to dist/bench/lib). */
export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Spawn a process that prints `<prefix> {json}` on stdout when ready; resolve with the parsed json. */
export function spawnReady(args: string[], prefix: string, timeoutMs: number): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${args.join(' ')}: no "${prefix}" line within ${timeoutMs} ms; stderr: ${err.slice(-2000)}`));
    }, timeoutMs);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      if (err.length < 100_000) err += s;
    });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (s: string) => {
      out += s;
      const at = out.indexOf(`${prefix} `);
      const nl = at < 0 ? -1 : out.indexOf('\n', at);
      if (nl > 0) {
        clearTimeout(timer);
        resolve({ child, info: JSON.parse(out.slice(at + prefix.length + 1, nl)) as Record<string, unknown> });
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(' ')} exited (${code ?? sig}) before ready; stderr: ${err.slice(-2000)}`));
    });
  });
}

export function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const hard = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(hard);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** utime + stime of a process, ms (Linux /proc/<pid>/stat, clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ", field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks * 10;
}


/** CPU ms of each thread of a process (/proc/<pid>/task/<tid>/stat), by tid. */
export function threadCpuMs(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) * 10);
    } catch {
      // the thread ended between readdir and read
    }
  }
  return out;
}

/** Thread roles of a mockfleet serve from its mockfleet_thread_cpu_info series: tid -> main | publisher | ranks. */
export function threadRoles(metricsText: string): Map<number, string> {
  const roles = new Map<number, string>();
  for (const m of metricsText.matchAll(/^mockfleet_thread_cpu_info\{[^}]*thread="([^"]+)",tid="(\d+)"/gm)) {
    const name = m[1] as string;
    roles.set(Number(m[2]), name === 'frontend' ? 'main' : name === 'publisher' ? 'publisher' : 'ranks');
  }
  return roles;
}

/** CPU ms per role between two threadCpuMs() readings (threads without a role count as other: GC helpers, libuv). */
export function cpuByRole(before: Map<number, number>, after: Map<number, number>, roles: Map<number, string>): Record<string, number> {
  const out: Record<string, number> = { main: 0, publisher: 0, ranks: 0, other: 0 };
  for (const [tid, ms] of after) {
    const role = roles.get(tid) ?? 'other';
    out[role] = (out[role] ?? 0) + ms - (before.get(tid) ?? 0);
  }
  return out;
}

/** A positive number flag of a benchmark (`--name 12`), or `fallback` when absent. */
export function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} must be a number > 0, got ${process.argv[i + 1]}`);
  return v;
}
