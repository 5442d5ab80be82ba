/**
 * `mockfleet serve` configuration: flags (vLLM / Dynamo spellings) -> one validated, frozen
 * ServeConfig. Precedence: defaults < --config file < MOCKFLEET_* env < flags (yargs applies the
 * last three; this module fills defaults and validates).
 */
import type { Options } from 'yargs';
import { normalizeEngineArgs } from '../engine/args.js';
import type { EngineArgs } from '../engine/types.js';
import type { RouterPolicy } from '../router/types.js';
import { availableParallelism } from 'node:os';
import { autoRanksPerThread } from '../cluster/layout.js';
import { InvalidConfigError } from '../util/errors.js';
import { checkCpusAllowed, parseCpuList } from '../util/affinity.js';
import { ENGINE_FLAG_OPTIONS } from './engine-flags.js';
import { parseKvEventsConfig } from './kv-events-config.js';
import type { KvEventsConfig } from './kv-events-config.js';
import type { DynamoWire } from '../protocol/topics.js';
import type { EngineFlagValues } from './engine-flags.js';

export const DEFAULT_MODEL_NAME = 'mockfleet/mock-llm';
export const ROUTER_POLICIES: readonly RouterPolicy[] = ['round_robin', 'random', 'least_loaded', 'kv'];

export const SERVE_FLAG_OPTIONS = {
  ...ENGINE_FLAG_OPTIONS,
  'num-workers': { type: 'number', default: 8, describe: 'Independent engines, each with its own 64-bit worker id', group: 'Fleet:' },
  'data-parallel-size': { type: 'number', default: 1, describe: 'Ranks (DP engines) per worker; ranks = workers x this', group: 'Fleet:' },
  router: { type: 'string', default: 'round_robin', choices: ROUTER_POLICIES, describe: 'How the fleet frontend picks a rank', group: 'Fleet:' },
  'kv-overlap-score-weight': { type: 'number', default: 1, describe: 'kv router: weight of prefill blocks against decode blocks in the cost', group: 'Fleet:' },
  'router-temperature': { type: 'number', default: 0, describe: 'kv router: 0 = lowest cost; > 0 = softmax sampling over normalised costs (seeded by --seed)', group: 'Fleet:' },
  'max-waiting': { type: 'number', default: 1000, describe: 'Waiting requests per rank before new ones get 429', group: 'Fleet:' },
  'worker-base-port': { type: 'number', describe: "Also serve worker i's own OpenAI API and /metrics on port P+i", group: 'Fleet:' },
  'ranks-per-thread': { type: 'string', default: 'auto', describe: 'Ranks multiplexed on one thread: a number (1 = one thread per rank) or auto (one thread per rank up to 8 threads per core, then ranks spread over that many threads)', group: 'Placement:' },
  cpus: { type: 'string', describe: 'Pin rank threads round-robin over this CPU list (e.g. 0-1, 2,4-7)', group: 'Placement:' },
  'publisher-cpus': { type: 'string', describe: 'Pin the shared publisher thread to these CPUs', group: 'Placement:' },
  'frontend-cpus': { type: 'string', describe: 'Pin the main (HTTP) thread to these CPUs', group: 'Placement:' },
  nats: { type: 'string', describe: 'Publish KV events, FPM and load metrics to this NATS server (default: embedded sink)', group: 'Events:' },
  namespace: { type: 'string', default: 'dynamo', describe: 'Dynamo namespace in subjects', group: 'Events:' },
  component: { type: 'string', default: 'backend', describe: 'Dynamo component in subjects', group: 'Events:' },
  'kv-events-format': { type: 'string', default: 'dynamo', choices: ['dynamo', 'vllm', 'both'], describe: 'KV event payloads: Dynamo RouterEvent, vLLM KVEventBatch, or both', group: 'Events:' },
  'vllm-event-encoding': { type: 'string', default: 'map', choices: ['array', 'map'], describe: 'vLLM KVEventBatch events: map = vLLM >= 0.24 (tagged maps), array = vLLM <= 0.23 (positional)', group: 'Events:' },
  'kv-events-config': { type: 'string', describe: 'vLLM KV events over ZMQ, vLLM\'s JSON: {"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557","replay_endpoint":"tcp://*:5657"}; rank r binds port + r', group: 'Events:' },
  endpoint: { type: 'string', default: 'generate', describe: 'Dynamo endpoint in endpoint-scoped subjects (namespace.NS.component.C.endpoint.EP.TOPIC)', group: 'Events:' },
  'dynamo-wire': { type: 'string', default: 'current', choices: ['current', 'legacy'], describe: 'current = Dynamo routers since July 2026 (batched kv-events, endpoint-scoped feeds); legacy = one RouterEvent per message, component-scoped', group: 'Events:' },
  'events-file': { type: 'string', describe: 'Also write every published message as a JSON line to this file', group: 'Events:' },
  'drain-timeout': { type: 'number', default: 10, describe: 'Seconds to let in-flight requests finish on SIGTERM/SIGINT', group: 'Server:' },
  'enable-fault-injection': { type: 'boolean', default: false, describe: 'Enable POST /admin/fault to crash a rank on purpose', group: 'Server:' },
  'rank-heap-mb': { type: 'number', default: 512, describe: 'Max old-generation heap per rank thread (MiB)', group: 'Server:' },
} as const satisfies Record<string, Options>;

export interface ServeFlagValues extends EngineFlagValues {
  numWorkers?: number | undefined;
  dataParallelSize?: number | undefined;
  router?: string | undefined;
  kvOverlapScoreWeight?: number | undefined;
  routerTemperature?: number | undefined;
  maxWaiting?: number | undefined;
  maxModelLen?: number | undefined;
  workerBasePort?: number | undefined;
  ranksPerThread?: number | string | undefined;
  cpus?: string | undefined;
  publisherCpus?: string | undefined;
  frontendCpus?: string | undefined;
  nats?: string | undefined;
  namespace?: string | undefined;
  component?: string | undefined;
  kvEventsFormat?: string | undefined;
  vllmEventEncoding?: string | undefined;
  kvEventsConfig?: string | undefined;
  endpoint?: string | undefined;
  dynamoWire?: string | undefined;
  eventsFile?: string | undefined;
  drainTimeout?: number | undefined;
  enableFaultInjection?: boolean | undefined;
  rankHeapMb?: number | undefined;
}

export interface ServeConfig {
  readonly numWorkers: number;
  readonly dataParallelSize: number;
  readonly engineArgs: Readonly<EngineArgs>;
  readonly speedupRatio: number;
  readonly decodeSpeedupRatio: number;
  readonly plannerProfileData: string | null;
  readonly router: RouterPolicy;
  readonly kvOverlapScoreWeight: number;
  readonly routerTemperature: number;
  readonly maxWaiting: number;
  readonly maxModelLen: number;
  readonly workerBasePort: number | null;
  readonly ranksPerThread: number;
  readonly rankCpus: readonly number[] | null;
  readonly publisherCpus: readonly number[] | null;
  readonly frontendCpus: readonly number[] | null;
  readonly natsUrl: string | null;
  readonly namespace: string;
  readonly component: string;
  readonly kvEventsFormat: 'dynamo' | 'vllm' | 'both';
  readonly vllmEventEncoding: 'array' | 'map';
  /** --kv-events-config, parsed (endpoints are resolved per rank at start, see kv-events-config.ts). */
  readonly kvEventsConfig: KvEventsConfig | null;
  readonly endpoint: string;
  readonly dynamoWire: DynamoWire;
  readonly eventsFile: string | null;
  readonly drainTimeoutMs: number;
  readonly enableFaultInjection: boolean;
  readonly rankHeapMb: number;
  readonly seed: number;
}

function intIn(flag: string, v: number | undefined, min: number, max: number, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
    throw new InvalidConfigError(`--${flag}`, `must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return x;
}

function numIn(flag: string, v: number | undefined, min: number, max: number, dflt: number): number {
  const x = v ?? dflt;
  if (typeof x !== 'number' || !Number.isFinite(x) || x < min || x > max) {
    throw new InvalidConfigError(`--${flag}`, `must be a number in [${min}, ${max}], got ${String(v)}`);
  }
  return x;
}

/** Subject tokens: no dots, whitespace or wildcards (they would split or widen the subject). */
function subjectToken(flag: string, v: string | undefined, dflt: string): string {
  const x = v ?? dflt;
  if (typeof x !== 'string' || !/^[A-Za-z0-9_-]+$/.test(x)) {
    throw new InvalidConfigError(`--${flag}`, `must be letters, digits, '_' or '-' (a NATS subject token), got "${String(v)}"`);
  }
  return x;
}

function cpuFlag(flag: string, v: string | undefined): number[] | null {
  if (v === undefined || v === null) return null;
  const cpus = parseCpuList(String(v), `--${flag}`);
  checkCpusAllowed(cpus, `--${flag}`);
  return cpus;
}

function oneOf<T extends string>(flag: string, v: string | undefined, options: readonly T[], dflt: T): T {
  const x = v ?? dflt;
  if (!(options as readonly string[]).includes(x)) {
    throw new InvalidConfigError(`--${flag}`, `must be one of ${options.join(', ')}, got "${String(v)}"`);
  }
  return x as T;
}

/** --ranks-per-thread: auto (default) or an integer in [1, 4096]. */
function ranksPerThreadFlag(v: number | string | undefined, numRanks: number, rankCpus: readonly number[] | null): number {
  if (v === undefined || v === 'auto') return autoRanksPerThread(numRanks, rankCpus === null ? availableParallelism() : rankCpus.length);
  const n = typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 4096) throw new InvalidConfigError('--ranks-per-thread', `must be auto or an integer in [1, 4096], got ${String(v)}`);
  return n;
}

export function normalizeServeConfig(f: ServeFlagValues): Readonly<ServeConfig> {
  const seed = intIn('seed', f.seed, 0, 0xffffffff, 0);
  const engineInput: Partial<{ -readonly [K in keyof EngineArgs]: EngineArgs[K] }> = { seed };
  if (f.numGpuBlocks !== undefined) engineInput.numGpuBlocks = f.numGpuBlocks;
  if (f.blockSize !== undefined) engineInput.blockSize = f.blockSize;
  if (f.maxNumSeqs !== undefined) engineInput.maxNumSeqs = f.maxNumSeqs;
  if (f.maxNumBatchedTokens !== undefined) engineInput.maxNumBatchedTokens = f.maxNumBatchedTokens;
  if (f.enablePrefixCaching !== undefined) engineInput.enablePrefixCaching = f.enablePrefixCaching;
  if (f.enableChunkedPrefill !== undefined) engineInput.enableChunkedPrefill = f.enableChunkedPrefill;
  if (f.preemptionMode !== undefined) engineInput.preemptionMode = f.preemptionMode as EngineArgs['preemptionMode'];
  const engineArgs = normalizeEngineArgs(engineInput);
  const kvCapacity = engineArgs.numGpuBlocks * engineArgs.blockSize;
  const maxModelLen = intIn('max-model-len', f.maxModelLen, 2, kvCapacity, kvCapacity);
  const numWorkers = intIn('num-workers', f.numWorkers, 1, 4096, 8);
  const dataParallelSize = intIn('data-parallel-size', f.dataParallelSize, 1, 1024, 1);
  if (numWorkers * dataParallelSize > 4096) {
    throw new InvalidConfigError('--num-workers', `num-workers x data-parallel-size must be at most 4096, got ${numWorkers * dataParallelSize}`);
  }
  const workerBasePort = f.workerBasePort === undefined ? null : intIn('worker-base-port', f.workerBasePort, 1, 65535 - numWorkers + 1, 0);
  const nats = f.nats === undefined || f.nats === '' ? null : String(f.nats);
  if (nats !== null && !/^(nats|tls|ws|wss):\/\/[^\s/]+$|^[^\s/:]+:\d+$/.test(nats)) {
    throw new InvalidConfigError('--nats', `expected a NATS URL like nats://127.0.0.1:4222, got "${nats}"`);
  }
  const speedupRatio = numIn('speedup-ratio', f.speedupRatio, 0, 1e12, 1);
  const rankCpus = cpuFlag('cpus', f.cpus);
  const decodeSpeedupRatio = numIn('decode-speedup-ratio', f.decodeSpeedupRatio, 1e-9, 1e12, 1);
  const cfg: ServeConfig = {
    numWorkers,
    dataParallelSize,
    engineArgs,
    speedupRatio,
    decodeSpeedupRatio,
    plannerProfileData: f.plannerProfileData === undefined || f.plannerProfileData === '' ? null : String(f.plannerProfileData),
    router: oneOf('router', f.router, ROUTER_POLICIES, 'round_robin'),
    kvOverlapScoreWeight: numIn('kv-overlap-score-weight', f.kvOverlapScoreWeight, 0, 1e6, 1),
    routerTemperature: numIn('router-temperature', f.routerTemperature, 0, 1e6, 0),
    maxWaiting: intIn('max-waiting', f.maxWaiting, 0, 1 << 24, 1000),
    maxModelLen,
    workerBasePort,
    ranksPerThread: ranksPerThreadFlag(f.ranksPerThread, numWorkers * dataParallelSize, rankCpus),
    rankCpus,
    publisherCpus: cpuFlag('publisher-cpus', f.publisherCpus),
    frontendCpus: cpuFlag('frontend-cpus', f.frontendCpus),
    natsUrl: nats,
    namespace: subjectToken('namespace', f.namespace, 'dynamo'),
    component: subjectToken('component', f.component, 'backend'),
    kvEventsFormat: oneOf('kv-events-format', f.kvEventsFormat, ['dynamo', 'vllm', 'both'] as const, 'dynamo'),
    vllmEventEncoding: oneOf('vllm-event-encoding', f.vllmEventEncoding, ['array', 'map'] as const, 'map'),
    kvEventsConfig: parseKvEventsConfig(f.kvEventsConfig === undefined ? undefined : String(f.kvEventsConfig)),
    endpoint: subjectToken('endpoint', f.endpoint, 'generate'),
    dynamoWire: oneOf('dynamo-wire', f.dynamoWire, ['current', 'legacy'] as const, 'current'),
    eventsFile: f.eventsFile === undefined || f.eventsFile === '' ? null : String(f.eventsFile),
    drainTimeoutMs: numIn('drain-timeout', f.drainTimeout, 0, 86400, 10) * 1000,
    enableFaultInjection: f.enableFaultInjection === true,
    rankHeapMb: intIn('rank-heap-mb', f.rankHeapMb, 16, 65536, 512),
    seed,
  };
  return Object.freeze(cfg);
}
