/**
 * `mockfleet worker --nats URL --fleet NAME`: ranks only. Runs the same rank threads and shared
 * publisher as `serve` (every topology, engine, pacing, pinning and event flag), registers them
 * in the fleet over NATS (remote-worker.ts), serves its own API, `/metrics` and `/health` on
 * `--port` so Prometheus scrapes every host, and prints one `mockfleet ready {json}` line.
 */
import type { ArgumentsCamelCase, Argv, CommandModule, Options } from 'yargs';
import { Coordinator } from '../../cluster/coordinator.js';
import { FleetWorker } from '../../cluster/remote-worker.js';
import { SERVE_FLAG_OPTIONS, normalizeServeConfig, DEFAULT_MODEL_NAME } from '../../config/serve-config.js';
import { loadPerfProfile } from '../../perf/profile-loader.js';
import { startHttpServer } from '../../http/server.js';
import { HTTP_FLAGS, httpOptionsFromArgv } from '../../http/flags.js';
import { currentTid, pinCurrentThread } from '../../util/affinity.js';
import { InvalidConfigError } from '../../util/errors.js';
import { clusterConfigFromServe, zmqPlanFromServe } from './serve.js';
import { exitOnSignals } from '../lifecycle.js';
import { READY_FLAGS, announceReady } from '../ready.js';
import { FLEET_FLAGS, checkFleetArgs, fleetWorkerIds } from './serve-fleet.js';
import type { FleetArgs } from './serve-fleet.js';

const WORKER_FLAGS = {
  'worker-id': { type: 'string', describe: "First engine's 64-bit worker id (the others count up); default: random, unique in the fleet", group: 'Fleet across hosts:' },
} as const satisfies Record<string, Options>;

type WorkerArgs = FleetArgs & { workerId?: string };

export interface WorkerHandle {
  readonly coordinator: Coordinator;
  readonly worker: FleetWorker;
  readonly url: string;
  close(): Promise<void>;
}

export async function startWorker(argv: WorkerArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<WorkerHandle> {
  const { fleet, nats } = checkFleetArgs(argv);
  if (argv.workerBasePort !== undefined) throw new InvalidConfigError('--worker-base-port', 'is not available for a fleet worker (its --port serves its ranks)');
  const cfg = normalizeServeConfig(argv);
  const httpBase = await httpOptionsFromArgv(argv);
  const modelName = httpBase.servedModelNames?.[0] ?? DEFAULT_MODEL_NAME;
  const profile = cfg.plannerProfileData === null ? null : loadPerfProfile(cfg.plannerProfileData);
  const workerIds = fleetWorkerIds(cfg.numWorkers, argv.workerId);
  // Frontends route to a rank; the coordinator's own router only serves this worker's own API.
  const coordinator = await Coordinator.start({ ...clusterConfigFromServe(cfg, modelName, profile, httpBase.tokenizer?.generationVocabulary(), zmqPlanFromServe(cfg, httpBase)), workerIds });
  let server;
  let worker: FleetWorker;
  try {
    if (cfg.frontendCpus !== null) pinCurrentThread(cfg.frontendCpus);
    server = await startHttpServer(coordinator, httpBase);
    try {
      worker = await FleetWorker.start({ fleet, natsUrl: nats, coordinator, httpUrl: server.url, log });
    } catch (err) {
      await server.close();
      throw err;
    }
  } catch (err) {
    await coordinator.shutdown(0);
    throw err;
  }
  const pub = coordinator.publisherHandle();
  const ready = {
    url: server.url,
    metrics: `${server.url}/metrics`,
    health: `${server.url}/health`,
    fleet,
    instance: worker.instanceId,
    model: modelName,
    workers: cfg.numWorkers,
    data_parallel_size: cfg.dataParallelSize,
    ranks: coordinator.numRanks,
    worker_ids: workerIds.map(String),
    nats,
    pid: process.pid,
    placement: [
      { thread: 'frontend', tid: currentTid(), cpus: cfg.frontendCpus },
      ...(pub === null ? [] : [{ thread: 'publisher', tid: pub.tid, cpus: cfg.publisherCpus }]),
      ...coordinator.ranks().map((r) => ({ thread: `rank${r.rank}`, tid: r.tid, cpus: r.cpu === null ? null : [r.cpu], worker: r.workerIndex, dp_rank: r.dpRank })),
    ],
  };
  log(`mockfleet: worker ${worker.instanceId} of fleet "${fleet}": ${coordinator.numRanks} ranks, /metrics at ${server.url}/metrics`);
  announceReady(ready, typeof argv['readyFile'] === 'string' ? argv['readyFile'] : undefined);
  let closing: Promise<void> | null = null;
  const srv = server;
  return {
    coordinator,
    worker,
    url: server.url,
    close(): Promise<void> {
      closing ??= (async () => {
        worker.beginDrain();
        const closed = srv.close();
        await coordinator.shutdown(cfg.drainTimeoutMs);
        await worker.close();
        await closed;
      })();
      return closing;
    },
  };
}

export const workerCommand: CommandModule<object, WorkerArgs> = {
  command: 'worker',
  describe: 'Run ranks only and join a fleet over NATS (frontends: serve --fleet)',
  builder: (y: Argv<object>) => y.options({ ...SERVE_FLAG_OPTIONS, ...HTTP_FLAGS, ...READY_FLAGS, ...FLEET_FLAGS, ...WORKER_FLAGS }).demandOption(['nats', 'fleet']) as unknown as Argv<WorkerArgs>,
  handler: async (argv: ArgumentsCamelCase<WorkerArgs>) => {
    const handle = await startWorker(argv);
    exitOnSignals(handle, argv.drainTimeout ?? 10);
  },
};
