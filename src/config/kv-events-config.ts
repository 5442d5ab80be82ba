/**
 * `--kv-events-config JSON`: vLLM's own flag and keys (KVEventsConfig in
 * vllm-project/vllm vllm/config/kv_events.py), validated, turned into one ZMQ endpoint pair per
 * rank the way vLLM offsets them per data-parallel rank (ZmqEventPublisher.offset_endpoint_port
 * in vllm/distributed/kv_events.py): rank r (global index) binds endpoint port + r and, with a
 * replay_endpoint, replay port + r. Every error names the flag (CLI exit 2).
 */
import { InvalidConfigError } from '../util/errors.js';

const FLAG = '--kv-events-config';

/** vLLM's KVEventsConfig, parsed. */
export interface KvEventsConfig {
  readonly enableKvCacheEvents: boolean;
  readonly publisher: 'zmq' | 'null';
  readonly endpoint: string;
  readonly replayEndpoint: string | null;
  readonly bufferSteps: number;
  readonly hwm: number;
  readonly maxQueueSize: number;
  readonly topic: string;
}

/** Where one rank publishes. */
export interface ZmqRankEndpoints {
  readonly rank: number;
  readonly endpoint: string;
  readonly replayEndpoint: string | null;
}

/** Everything the ZMQ publisher needs, per rank resolved. */
export interface ZmqPublishPlan {
  readonly topic: string;
  readonly bufferSteps: number;
  readonly hwm: number;
  readonly maxQueueSize: number;
  readonly ranks: readonly ZmqRankEndpoints[];
}

const KEYS = ['enable_kv_cache_events', 'publisher', 'endpoint', 'replay_endpoint', 'buffer_steps', 'hwm', 'max_queue_size', 'topic'] as const;

function intKey(o: Record<string, unknown>, key: string, min: number, dflt: number): number {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 0x7fffffff) {
    throw new InvalidConfigError(FLAG, `"${key}" must be an integer in [${min}, ${0x7fffffff}], got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Parses and validates the JSON (key set and types); null when the flag is absent. */
export function parseKvEventsConfig(raw: string | undefined): KvEventsConfig | null {
  if (raw === undefined || raw === '') return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new InvalidConfigError(FLAG, `not valid JSON (${(err as Error).message}): ${raw}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new InvalidConfigError(FLAG, `must be a JSON object like {"enable_kv_cache_events": true, "publisher": "zmq"}, got ${raw}`);
  }
  const o = parsed as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !(KEYS as readonly string[]).includes(k));
  if (unknown.length > 0) throw new InvalidConfigError(FLAG, `unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}; vLLM's keys are ${KEYS.join(', ')}`);
  const enable = o['enable_kv_cache_events'] ?? false;
  if (typeof enable !== 'boolean') throw new InvalidConfigError(FLAG, `"enable_kv_cache_events" must be true or false, got ${JSON.stringify(enable)}`);
  const pub = o['publisher'] ?? null;
  if (pub !== null && pub !== 'zmq' && pub !== 'null') throw new InvalidConfigError(FLAG, `"publisher" must be "zmq" or "null", got ${JSON.stringify(pub)}`);
  const endpoint = o['endpoint'] ?? 'tcp://*:5557';
  if (typeof endpoint !== 'string') throw new InvalidConfigError(FLAG, `"endpoint" must be a string, got ${JSON.stringify(endpoint)}`);
  const replay = o['replay_endpoint'] ?? null;
  if (replay !== null && typeof replay !== 'string') throw new InvalidConfigError(FLAG, `"replay_endpoint" must be a string or null, got ${JSON.stringify(replay)}`);
  const topic = o['topic'] ?? '';
  if (typeof topic !== 'string') throw new InvalidConfigError(FLAG, `"topic" must be a string, got ${JSON.stringify(topic)}`);
  return {
    enableKvCacheEvents: enable,
    // vLLM's __post_init__: no publisher given -> "zmq" when events are enabled, else "null".
    publisher: pub ?? (enable ? 'zmq' : 'null'),
    endpoint,
    replayEndpoint: replay === '' ? null : replay,
    bufferSteps: intKey(o, 'buffer_steps', 1, 10_000),
    hwm: intKey(o, 'hwm', 0, 100_000),
    maxQueueSize: intKey(o, 'max_queue_size', 1, 100_000),
    topic,
  };
}

interface ParsedEndpoint {
  scheme: 'tcp' | 'ipc';
  host: string;
  port: number;
  path: string;
}

function parseEndpoint(key: string, ep: string): ParsedEndpoint {
  if (ep.startsWith('ipc://')) {
    if (ep.length === 'ipc://'.length) throw new InvalidConfigError(FLAG, `"${key}" ${ep} has no path`);
    return { scheme: 'ipc', host: '', port: 0, path: ep.slice('ipc://'.length) };
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/\s]+):(\d+)$/.exec(ep);
  if (m === null) throw new InvalidConfigError(FLAG, `"${key}" must look like tcp://*:5557, tcp://HOST:PORT or ipc://PATH, got "${ep}"`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new InvalidConfigError(FLAG, `"${key}" port must be in [1, 65535], got ${m[2]}`);
  return { scheme: 'tcp', host: m[1] as string, port, path: '' };
}

/**
 * Resolves each rank's endpoints. `*` (vLLM's "all interfaces") binds `--host`'s address; an
 * explicit host is kept. Fails when a rank's port passes 65535 or the PUB and replay ranges (or
 * the HTTP ports given in `otherPorts`) overlap. Null when vLLM would not publish
 * (enable_kv_cache_events false or publisher "null").
 */
export function planZmqEndpoints(cfg: KvEventsConfig | null, numRanks: number, bindHost: string, otherPorts: ReadonlyArray<{ flag: string; from: number; to: number }>): ZmqPublishPlan | null {
  if (cfg === null || !cfg.enableKvCacheEvents || cfg.publisher !== 'zmq') return null;
  const pub = parseEndpoint('endpoint', cfg.endpoint);
  const rep = cfg.replayEndpoint === null ? null : parseEndpoint('replay_endpoint', cfg.replayEndpoint);
  const host = (p: ParsedEndpoint): string => (p.host === '*' ? (bindHost.includes(':') && !bindHost.startsWith('[') ? `[${bindHost}]` : bindHost) : p.host);
  const ranges: Array<{ what: string; from: number; to: number }> = [];
  for (const [key, p] of [['endpoint', pub], ['replay_endpoint', rep]] as const) {
    if (p === null || p.scheme !== 'tcp') continue;
    const last = p.port + numRanks - 1;
    if (last > 65535) throw new InvalidConfigError(FLAG, `"${key}" port ${p.port} + ${numRanks - 1} (one port per rank) exceeds 65535; pick a base port <= ${65535 - numRanks + 1}`);
    ranges.push({ what: `"${key}" ports ${p.port}-${last}`, from: p.port, to: last });
  }
  if (pub.scheme === 'ipc' && rep !== null && rep.scheme === 'ipc' && pub.path === rep.path) {
    throw new InvalidConfigError(FLAG, `"endpoint" and "replay_endpoint" are the same ipc path ${pub.path}`);
  }
  const all = [...ranges, ...otherPorts.filter((o) => o.from > 0).map((o) => ({ what: `${o.flag} ${o.from === o.to ? `port ${o.from}` : `ports ${o.from}-${o.to}`}`, from: o.from, to: o.to }))];
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i]!;
      const b = all[j]!;
      if (a.from <= b.to && b.from <= a.to) throw new InvalidConfigError(FLAG, `${a.what} collide with ${b.what}`);
    }
  }
  const at = (p: ParsedEndpoint, r: number): string => (p.scheme === 'ipc' ? (r === 0 ? `ipc://${p.path}` : `ipc://${p.path}_dp${r}`) : `tcp://${host(p)}:${p.port + r}`);
  const ranks: ZmqRankEndpoints[] = [];
  for (let r = 0; r < numRanks; r++) ranks.push({ rank: r, endpoint: at(pub, r), replayEndpoint: rep === null ? null : at(rep, r) });
  return { topic: cfg.topic, bufferSteps: cfg.bufferSteps, hwm: cfg.hwm, maxQueueSize: cfg.maxQueueSize, ranks };
}
