/**
 * `mockfleet serve --nats URL --fleet NAME`: a fleet frontend. Its own ranks (`--num-workers`,
 * 0 = none) and every `mockfleet worker` of the fleet, discovered over NATS, behind one API,
 * `/metrics`, `/dashboard` and `GET /fleet`. Several frontends may serve one fleet.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Options } from 'yargs';
import { Coordinator } from '../../cluster/coordinator.js';
import { FleetBackend } from '../../cluster/remote-fleet.js';
import { checkFleetName } from '../../cluster/remote-wire.js';
import { normalizeServeConfig, DEFAULT_MODEL_NAME } from '../../config/serve-config.js';
import type { ServeFlagValues } from '../../config/serve-config.js';
import { counterLayout } from '../../protocol/rank-counters.js';
import { loadPerfProfile } from '../../perf/profile-loader.js';
import { startHttpServer } from '../../http/server.js';
import { httpOptionsFromArgv } from '../../http/flags.js';
import { currentTid, pinCurrentThread } from '../../util/affinity.js';
import { InvalidConfigError } from '../../util/errors.js';
import { DashboardService } from '../../dashboard/service.js';
import type { DashboardSource } from '../../dashboard/source.js';
import { clusterConfigFromServe, zmqPlanFromServe } from './serve.js';
import { announceReady } from '../ready.js';

export const FLEET_FLAGS = {
  fleet: { type: 'string', describe: 'Join fleet NAME over --nats: frontends (serve) route to every worker of the fleet', group: 'Fleet across hosts:' },
  'fleet-liveness-ms': { type: 'number', default: 1200, describe: 'Drop a worker silent for this long (its in-flight requests end 503)', group: 'Fleet across hosts:' },
} as const satisfies Record<string, Options>;

export type FleetArgs = ServeFlagValues & Record<string, unknown> & { fleet?: string; fleetLivenessMs?: number };

export interface FleetServeHandle {
  readonly fleet: FleetBackend;
  readonly url: string;
  close(): Promise<void>;
}

/** Fleet-unique 63-bit worker ids: random unless `--worker-id` fixes the first one. */
export function fleetWorkerIds(count: number, first: unknown): bigint[] {
  if (first !== undefined) {
    let base: bigint;
    try {
      base = BigInt(String(first));
    } catch {
      throw new InvalidConfigError('--worker-id', `must be a positive integer, got ${JSON.stringify(first)}`);
    }
    if (base < 1n || base + BigInt(count) > (1n << 63n)) throw new InvalidConfigError('--worker-id', `must be in [1, 2^63 - ${count}], got ${base}`);
    return Array.from({ length: count }, (_, i) => base + BigInt(i));
  }
  return Array.from({ length: count }, () => (randomBytes(8).readBigUInt64LE(0) & ((1n << 63n) - 1n)) | 1n);
}

export function checkFleetArgs(argv: FleetArgs): { fleet: string; nats: string; livenessMs: number } {
  const fleet = checkFleetName(argv.fleet);
  if (argv.nats === undefined || argv.nats === '') throw new InvalidConfigError('--nats', 'a fleet needs a NATS server: --nats nats://HOST:4222');
  const livenessMs = Number(argv.fleetLivenessMs ?? 1200);
  if (!Number.isInteger(livenessMs) || livenessMs < 300 || livenessMs > 60_000) {
    throw new InvalidConfigError('--fleet-liveness-ms', `must be an integer in [300, 60000], got ${String(argv.fleetLivenessMs)}`);
  }
  return { fleet, nats: String(argv.nats), livenessMs };
}

export async function startFleetServe(argv: FleetArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<FleetServeHandle> {
  const { fleet: fleetName, livenessMs } = checkFleetArgs(argv);
  const numLocalWorkers = argv.numWorkers ?? 8;
  if (!Number.isInteger(numLocalWorkers) || numLocalWorkers < 0) {
    throw new InvalidConfigError('--num-workers', `must be an integer ≥ 0 (0 = a frontend without local ranks), got ${String(argv.numWorkers)}`);
  }
  if (argv.workerBasePort !== undefined) throw new InvalidConfigError('--worker-base-port', 'is not available with --fleet (each worker serves its own /metrics on its --port)');
  const cfg = normalizeServeConfig({ ...argv, numWorkers: Math.max(1, numLocalWorkers) });
  const httpBase = await httpOptionsFromArgv(argv);
  const modelName = httpBase.servedModelNames?.[0] ?? DEFAULT_MODEL_NAME;
  const profile = cfg.plannerProfileData === null ? null : loadPerfProfile(cfg.plannerProfileData);
  // The fleet router decides; local ranks publish their KV events to NATS like remote ones.
  const local = numLocalWorkers === 0
    ? null
    : await Coordinator.start({ ...clusterConfigFromServe(cfg, modelName, profile, httpBase.tokenizer?.generationVocabulary(), zmqPlanFromServe(cfg, httpBase)), router: 'round_robin', workerIds: fleetWorkerIds(cfg.numWorkers, undefined) });
  let fleet: FleetBackend;
  try {
    if (cfg.frontendCpus !== null) pinCurrentThread(cfg.frontendCpus);
    fleet = await FleetBackend.start({
      fleet: fleetName,
      natsUrl: cfg.natsUrl as string,
      local,
      modelName,
      router: cfg.router,
      kvOverlapScoreWeight: cfg.kvOverlapScoreWeight,
      routerTemperature: cfg.routerTemperature,
      seed: cfg.seed,
      blockSize: cfg.engineArgs.blockSize,
      numGpuBlocks: cfg.engineArgs.numGpuBlocks,
      maxModelLen: cfg.maxModelLen,
      dataParallelSize: cfg.dataParallelSize,
      layout: counterLayout(cfg.maxModelLen),
      speedupRatio: cfg.speedupRatio,
      namespace: cfg.namespace,
      component: cfg.component,
      livenessMs,
      log,
    });
  } catch (err) {
    await local?.shutdown(0);
    throw err;
  }
  const source = fleet as unknown as DashboardSource;
  let dashboard = new DashboardService(source);
  fleet.onCapacityChange = () => {
    dashboard.close();
    dashboard = new DashboardService(source);
  };
  const fleetRoute = (req: IncomingMessage, res: ServerResponse): boolean => {
    if ((req.url ?? '').split('?')[0] !== '/fleet') return false;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(fleet.fleetView()));
    return true;
  };
  let server;
  try {
    server = await startHttpServer(fleet, { ...httpBase, extraRoutes: (req, res) => fleetRoute(req, res) || dashboard.route(req, res) });
  } catch (err) {
    dashboard.close();
    await fleet.shutdown(0);
    throw err;
  }
  const view = fleet.fleetView() as { workers: unknown[] };
  const ready = {
    url: server.url,
    metrics: `${server.url}/metrics`,
    dashboard: `${server.url}/dashboard`,
    fleet: fleetName,
    frontend_id: fleet.frontendId,
    model: modelName,
    local_ranks: local?.numRanks ?? 0,
    worker_ids: local === null ? [] : [...new Set(local.ranks().map((r) => r.workerId.toString()))],
    remote_workers: view.workers.length,
    nats: cfg.natsUrl,
    router: cfg.router,
    pid: process.pid,
    placement: [{ thread: 'frontend', tid: currentTid(), cpus: cfg.frontendCpus }],
  };
  log(`mockfleet: fleet "${fleetName}" frontend at ${server.url} (${ready.local_ranks} local ranks, ${ready.remote_workers} remote workers so far)`);
  announceReady(ready, typeof argv['readyFile'] === 'string' ? argv['readyFile'] : undefined);
  let closing: Promise<void> | null = null;
  const srv = server;
  return {
    fleet,
    url: server.url,
    close(): Promise<void> {
      closing ??= (async () => {
        dashboard.close();
        const closed = srv.close();
        await fleet.shutdown(cfg.drainTimeoutMs);
        await closed;
      })();
      return closing;
    },
  };
}
