/**
 * How many ranks share a thread (`--ranks-per-thread auto`).
 *
 * Every thread wake-up costs ~0.1 ms of CPU on a small VM and every thread ~2-9 MiB and ~15-35 ms
 * to start, while a thread's own work per wake-up grows only slowly with its ranks (it services
 * the ranks whose deadline came or that were marked, then sleeps once for all). So up to
 * THREADS_PER_CORE threads per core a fleet keeps one thread per rank (the lowest lateness,
 * nothing shared); beyond that the ranks are spread evenly over cores × THREADS_PER_CORE
 * threads. THREADS_PER_CORE was measured with bench:pacing (bench/README.md): 256 busy ranks at
 * speedup 1 on 2 cores.
 */
export const THREADS_PER_CORE = 8;

export function autoRanksPerThread(numRanks: number, cores: number): number {
  const threads = Math.max(1, Math.floor(cores)) * THREADS_PER_CORE;
  return numRanks <= threads ? 1 : Math.ceil(numRanks / threads);
}
