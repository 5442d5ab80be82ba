/**
 * How many ranks share a thread (`--ranks-per-thread auto`).
 *
 * Every thread wake-up costs tens of µs to ~0.1 ms of CPU on a small VM and every thread ~2-9 MiB
 * and ~15-35 ms to start, while a thread's own work per wake-up grows only slowly with its ranks
 * (it services the ranks whose deadline came or that were marked, then sleeps once for all; ranks
 * serviced in one round also fall due together afterwards). Small fleets, up to
 * SMALL_FLEET_THREADS_PER_CORE threads per core, keep one thread per rank (nothing shared: a long
 * step of one rank never holds up another). Larger fleets are spread evenly over
 * LARGE_FLEET_THREADS_PER_CORE threads per core: measured with bench:pacing (bench/README.md,
 * 256 busy ranks at speedup 1 on 2 cores), CPU per pass and lateness both fell as threads went
 * from 8 per core to 1 per core, because the per-pass work stayed the same and wake-ups fell ~9x.
 */
export const SMALL_FLEET_THREADS_PER_CORE = 8;
export const LARGE_FLEET_THREADS_PER_CORE = 1;

export function autoRanksPerThread(numRanks: number, cores: number): number {
  const c = Math.max(1, Math.floor(cores));
  if (numRanks <= c * SMALL_FLEET_THREADS_PER_CORE) return 1;
  return Math.ceil(numRanks / (c * LARGE_FLEET_THREADS_PER_CORE));
}
