/**
 * Per-thread CPU pinning on Linux. Affinity is per thread, so each thread pins itself once at
 * start: its TID comes from /proc/thread-self and `taskset -p -c LIST TID` sets it (node-notes §6).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { InvalidConfigError, MockfleetError } from './errors.js';

/** Parse a Linux CPU list like "0-1", "2,4-7". Throws InvalidConfigError naming `flag`. */
export function parseCpuList(text: string, flag: string): number[] {
  const out: number[] = [];
  const trimmed = text.trim();
  if (trimmed === '') throw new InvalidConfigError(flag, 'empty CPU list');
  for (const part of trimmed.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) throw new InvalidConfigError(flag, `"${part}" is not a CPU number or range (expected e.g. 0-1,4)`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) throw new InvalidConfigError(flag, `range "${part}" is reversed`);
    for (let c = lo; c <= hi; c++) if (!out.includes(c)) out.push(c);
  }
  return out;
}

/** CPUs this process may run on (Cpus_allowed_list of /proc/self/status). */
export function allowedCpus(): number[] {
  const status = readFileSync('/proc/self/status', 'utf8');
  const m = /^Cpus_allowed_list:\s*(.+)$/m.exec(status);
  if (m === null || m[1] === undefined) throw new MockfleetError('MOCKFLEET_ERR_AFFINITY', 'cannot read Cpus_allowed_list from /proc/self/status');
  return parseCpuList(m[1], 'Cpus_allowed_list');
}

/** Check every CPU of a flag is allowed for this process; throws InvalidConfigError otherwise. */
export function checkCpusAllowed(cpus: readonly number[], flag: string): void {
  const allowed = allowedCpus();
  for (const c of cpus) {
    if (!allowed.includes(c)) {
      throw new InvalidConfigError(flag, `CPU ${c} is not in this process's allowed set (${allowed.join(',')})`);
    }
  }
}

/** Linux TID of the calling thread. */
export function currentTid(): number {
  const link = readlinkSync('/proc/thread-self');
  const tid = Number(link.slice(link.lastIndexOf('/') + 1));
  if (!Number.isInteger(tid) || tid <= 0) throw new MockfleetError('MOCKFLEET_ERR_AFFINITY', `unexpected /proc/thread-self link "${link}"`);
  return tid;
}

/** Pin thread `tid` to `cpus`. Throws MockfleetError with taskset's message on failure. */
export function pinThread(tid: number, cpus: readonly number[]): void {
  try {
    execFileSync('taskset', ['-p', '-c', cpus.join(','), String(tid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new MockfleetError('MOCKFLEET_ERR_AFFINITY', `taskset could not pin thread ${tid} to CPUs ${cpus.join(',')}: ${stderr || String(err)}`, { cause: err });
  }
}

/** Pin the calling thread; returns its TID. */
export function pinCurrentThread(cpus: readonly number[]): number {
  const tid = currentTid();
  pinThread(tid, cpus);
  return tid;
}

/** Cpus_allowed_list of one thread, read back from /proc (the proof that pinning took). */
export function threadCpus(pid: number, tid: number): number[] {
  const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
  const m = /^Cpus_allowed_list:\s*(.+)$/m.exec(status);
  if (m === null || m[1] === undefined) throw new MockfleetError('MOCKFLEET_ERR_AFFINITY', `no Cpus_allowed_list for thread ${tid}`);
  return parseCpuList(m[1], 'Cpus_allowed_list');
}
