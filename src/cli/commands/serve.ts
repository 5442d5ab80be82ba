/**
 * `mockfleet serve`: start the fleet (rank threads + shared publisher), the OpenAI-compatible
 * frontend and optional per-worker endpoints; print one `mockfleet ready {json}` line on stdout
 * when everything accepts traffic. Logs go to stderr.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { Coordinator } from '../../cluster/coordinator.js';
import type { ClusterConfig } from '../../cluster/coordinator.js';
import { SERVE_FLAG_OPTIONS, normalizeServeConfig, DEFAULT_MODEL_NAME } from '../../config/serve-config.js';
import type { ServeConfig, ServeFlagValues } from '../../config/serve-config.js';
import { loadPerfProfile } from '../../perf/profile-loader.js';
import { readBody, sendError, startHttpServer } from '../../http/server.js';
import { HTTP_FLAGS, httpOptionsFromArgv } from '../../http/flags.js';
import { currentTid, pinCurrentThread } from '../../util/affinity.js';
import { InvalidRequestError } from '../../util/errors.js';
import { DashboardService } from '../../dashboard/service.js';
import { planZmqEndpoints } from '../../config/kv-events-config.js';
import type { ZmqPublishPlan } from '../../config/kv-events-config.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../../http/options.js';
import { exitOnSignals } from '../lifecycle.js';
import { READY_FLAGS, announceReady } from '../ready.js';
import { FLEET_FLAGS, startFleetServe } from './serve-fleet.js';

type ServeArgs = ServeFlagValues & { model?: string | undefined } & Record<string, unknown>;

export interface ServeHandle {
  readonly coordinator: Coordinator;
  readonly url: string;
  close(): Promise<void>;
}

/** POST /admin/fault {"rank": N, "kind": "throw" | "exit" | "oom"} (only with --enable-fault-injection). */
function adminRoute(coordinator: Coordinator, cfg: ServeConfig): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/admin/fault') return false;
    if (!cfg.enableFaultInjection) {
      sendError(res, new InvalidRequestError('fault injection is off; start serve with --enable-fault-injection', null, 404, 'not_found'));
      return true;
    }
    if (req.method !== 'POST') {
      sendError(res, new InvalidRequestError('use POST', null, 405, 'method_not_allowed'));
      return true;
    }
    readBody(req, res, 4096).then(
      (raw) => {
        let body: unknown;
        try {
          body = JSON.parse(raw.toString('utf8'));
        } catch {
          throw new InvalidRequestError('body must be JSON like {"rank": 0, "kind": "throw"}');
        }
        const b = body as { rank?: unknown; kind?: unknown };
        if (typeof b.rank !== 'number' || !Number.isInteger(b.rank)) throw new InvalidRequestError('rank must be an integer', 'rank');
        if (b.kind !== 'throw' && b.kind !== 'exit' && b.kind !== 'oom') throw new InvalidRequestError('kind must be throw, exit or oom', 'kind');
        coordinator.injectFault(b.rank, b.kind);
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ rank: b.rank, kind: b.kind, status: 'injected' }));
      },
    ).catch((err: unknown) => sendError(res, err));
    return true;
  };
}

/** Each rank's ZMQ sockets for --kv-events-config (null when vLLM would not publish), checked against the HTTP ports. */
export function zmqPlanFromServe(cfg: ServeConfig, httpBase: { host?: string | undefined; port?: number | undefined }): ZmqPublishPlan | null {
  const httpPort = httpBase.port ?? DEFAULT_PORT;
  return planZmqEndpoints(cfg.kvEventsConfig, cfg.numWorkers * cfg.dataParallelSize, httpBase.host ?? DEFAULT_HOST, [
    { flag: '--port', from: httpPort, to: httpPort },
    ...(cfg.workerBasePort === null ? [] : [{ flag: '--worker-base-port', from: cfg.workerBasePort, to: cfg.workerBasePort + cfg.numWorkers - 1 }]),
  ]);
}

/** The coordinator configuration `serve` (and `worker`, the fleet frontend) build from their flags. */
export function clusterConfigFromServe(
  cfg: ServeConfig,
  modelName: string,
  profile: ClusterConfig['profile'],
  generatedVocabulary: Uint32Array | undefined,
  zmq: ZmqPublishPlan | null = null,
): ClusterConfig {
  return {
    modelName,
    numWorkers: cfg.numWorkers,
    dataParallelSize: cfg.dataParallelSize,
    engineArgs: cfg.engineArgs,
    profile,
    speedupRatio: cfg.speedupRatio,
    decodeSpeedupRatio: cfg.decodeSpeedupRatio,
    maxModelLen: cfg.maxModelLen,
    maxWaiting: cfg.maxWaiting,
    router: cfg.router,
    kvOverlapScoreWeight: cfg.kvOverlapScoreWeight,
    routerTemperature: cfg.routerTemperature,
    seed: cfg.seed,
    natsUrl: cfg.natsUrl,
    namespace: cfg.namespace,
    component: cfg.component,
    kvEventsFormat: cfg.kvEventsFormat,
    vllmEventEncoding: cfg.vllmEventEncoding,
    endpoint: cfg.endpoint,
    dynamoWire: cfg.dynamoWire,
    zmq,
    eventsFile: cfg.eventsFile,
    rankCpus: cfg.rankCpus,
    ranksPerThread: cfg.ranksPerThread,
    publisherCpus: cfg.publisherCpus,
    frontendCpus: cfg.frontendCpus,
    heartbeatMs: 1000,
    rankHeapMb: cfg.rankHeapMb,
    // Ranks generate from the tokenizer's round-tripping words, so clients re-tokenise exactly.
    generatedVocabulary,
  };
}

export async function startServe(argv: ServeArgs, log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Promise<ServeHandle> {
  const cfg = normalizeServeConfig(argv);
  const httpBase = await httpOptionsFromArgv(argv);
  const modelName = httpBase.servedModelNames?.[0] ?? DEFAULT_MODEL_NAME;
  const profile = cfg.plannerProfileData === null ? null : loadPerfProfile(cfg.plannerProfileData);
  const zmq = zmqPlanFromServe(cfg, httpBase);

  const coordinator = await Coordinator.start(clusterConfigFromServe(cfg, modelName, profile, httpBase.tokenizer?.generationVocabulary(), zmq));
  // Threads inherit their creator's affinity: pin the main thread only after the rank and
  // publisher threads exist, so --frontend-cpus does not leak into them.
  if (cfg.frontendCpus !== null) {
    try {
      pinCurrentThread(cfg.frontendCpus);
    } catch (err) {
      await coordinator.shutdown(0);
      throw err;
    }
  }
  const dashboard = new DashboardService(coordinator);
  const admin = adminRoute(coordinator, cfg);
  const extraRoutes = (req: IncomingMessage, res: ServerResponse): boolean => admin(req, res) || dashboard.route(req, res);
  let servers: Array<{ url: string; close(): Promise<void> }> = [];
  try {
    const main = await startHttpServer(coordinator, { ...httpBase, extraRoutes });
    servers.push(main);
    if (cfg.workerBasePort !== null) {
      for (let w = 0; w < cfg.numWorkers; w++) {
        servers.push(await startHttpServer(coordinator, { ...httpBase, port: cfg.workerBasePort + w, workerIndex: w }));
      }
    }
  } catch (err) {
    for (const s of servers) await s.close();
    await coordinator.shutdown(0);
    throw err;
  }
  const mainUrl = (servers[0] as { url: string }).url;
  const pub = coordinator.publisherHandle();
  const placement = [
    { thread: 'frontend', tid: currentTid(), cpus: cfg.frontendCpus },
    ...(pub === null ? [] : [{ thread: 'publisher', tid: pub.tid, cpus: cfg.publisherCpus }]),
    ...coordinator.ranks().map((r) => ({ thread: `rank${r.rank}`, tid: r.tid, cpus: r.cpu === null ? null : [r.cpu], worker: r.workerIndex, dp_rank: r.dpRank })),
  ];
  const ready = {
    url: mainUrl,
    metrics: `${mainUrl}/metrics`,
    dashboard: `${mainUrl}/dashboard`,
    model: modelName,
    workers: cfg.numWorkers,
    data_parallel_size: cfg.dataParallelSize,
    ranks: coordinator.numRanks,
    worker_ids: [...new Set(coordinator.ranks().map((r) => r.workerId.toString()))],
    worker_urls: servers.slice(1).map((s) => s.url),
    nats: cfg.natsUrl,
    // vLLM-native KV events (--kv-events-config): where each rank's PUB / replay ROUTER listens.
    kv_events_endpoints: zmq === null ? [] : zmq.ranks.map((z) => {
      const r = coordinator.ranks()[z.rank];
      return { rank: z.rank, worker_id: r?.workerId.toString(), dp_rank: r?.dpRank, endpoint: z.endpoint, replay_endpoint: z.replayEndpoint, topic: zmq.topic };
    }),
    router: cfg.router,
    pid: process.pid,
    placement,
  };
  log(`mockfleet: ${coordinator.numRanks} ranks (${cfg.numWorkers} workers x ${cfg.dataParallelSize}) on ${coordinator.numThreads} rank threads (--ranks-per-thread ${cfg.ranksPerThread}) serving ${modelName} at ${mainUrl}`);
  announceReady(ready, typeof argv.readyFile === 'string' ? argv.readyFile : undefined);
  let closing: Promise<void> | null = null;
  return {
    coordinator,
    url: mainUrl,
    close(): Promise<void> {
      if (closing !== null) return closing;
      closing = (async () => {
        dashboard.close();
        // Stop accepting first; streams already open finish (or are aborted) in shutdown().
        const closes = servers.map((s) => s.close());
        await coordinator.shutdown(cfg.drainTimeoutMs);
        await Promise.all(closes);
        servers = [];
      })();
      return closing;
    },
  };
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'Run a simulated fleet behind an OpenAI-compatible API',
  builder: (y: Argv<object>) => y.options({ ...SERVE_FLAG_OPTIONS, ...HTTP_FLAGS, ...READY_FLAGS, ...FLEET_FLAGS }) as unknown as Argv<ServeArgs>,
  handler: async (argv: ArgumentsCamelCase<ServeArgs>) => {
    const handle = argv['fleet'] !== undefined ? await startFleetServe(argv) : await startServe(argv);
    exitOnSignals(handle, argv.drainTimeout ?? 10);
  },
};
