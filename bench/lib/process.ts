/**
 * Process helpers shared by the macro benchmarks: spawn a command that announces readiness with
 * one `<prefix> {json}` stdout line, stop it, and read its CPU time from /proc.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

