/**
 * What the dashboard reads from the fleet. Coordinator satisfies it structurally; tests pass a
 * fake. Everything here is read-only shared state: the per-rank Float64Arrays are the same
 * counters /metrics renders, so the dashboard never asks a rank thread for anything.
 */
import type { CounterLayout } from '../protocol/rank-counters.js';
import type { PublisherStats } from '../transport/stats.js';

export interface DashboardRankInfo {
  readonly rank: number;
  readonly workerIndex: number;
  readonly dpRank: number;
  readonly workerId: bigint;
  readonly cpu: number | null;
  readonly tid: number | null;
}

export interface DashboardPublisher {
  stats(): PublisherStats;
  readonly tid: number | null;
  readonly pinnedCpus: string | null;
}

export interface DashboardSource {
  readonly numRanks: number;
  readonly numWorkers: number;
  readonly dataParallelSize: number;
  readonly modelName: string;
  readonly config: {
    readonly speedupRatio: number;
    readonly router: string;
    readonly natsUrl: string | null;
  };
  readonly layout: CounterLayout;
  readonly counters: readonly Float64Array[];
  ranks(): readonly DashboardRankInfo[];
  rankRestarts(rank: number): number;
  publisherHandle(): DashboardPublisher | null;
}
