/**
 * Event-plane topics, the one-byte codes that frame them in a rank's event ring, and the one
 * function that builds their NATS subjects (engine-spec §11).
 */
import { InvalidConfigError } from '../util/errors.js';

/** First byte of every record in a rank's event ring. */
export const TopicCode = {
  kvEvents: 1,
  forwardPassMetrics: 2,
  kvMetrics: 3,
  kvEventsVllm: 4,
} as const;
export type TopicCodeValue = (typeof TopicCode)[keyof typeof TopicCode];

/** Topic names by code (index = code; index 0 unused). */
export const TOPIC_NAMES = ['', 'kv-events', 'forward-pass-metrics', 'kv_metrics', 'kv-events-vllm'] as const;
export type TopicName = Exclude<(typeof TOPIC_NAMES)[number], ''>;
export const TOPIC_COUNT = 4;

/** One NATS subject token: non-empty, no whitespace, no '.', '*' or '>'. */
const TOKEN_RE = /^[^\s.*>]+$/;

/**
 * Which Dynamo routers the NATS feeds are for:
 *   current — routers since July 2026: every worker feed endpoint-scoped
 *             (ai-dynamo/dynamo PR #11841, EventScope::Endpoint) and kv-events carrying an
 *             array of RouterEvents per message (PR #11776);
 *   legacy  — older routers: one RouterEvent per message, kv-events and forward-pass-metrics
 *             component-scoped. kv_metrics (WorkerMetricsPublisher) is endpoint-scoped in both.
 */
export type DynamoWire = 'current' | 'legacy';

/** Where a topic's subject is scoped under each wire. */
export function endpointScoped(topic: TopicName, wire: DynamoWire): boolean {
  return wire === 'current' || topic === 'kv_metrics';
}

/**
 * `namespace.{ns}.component.{component}.{topic}` (endpoint null) or
 * `namespace.{ns}.component.{component}.endpoint.{endpoint}.{topic}`, validated. Called once per
 * topic at publisher start; the strings are cached and reused for every message.
 */
export function buildSubject(namespace: string, component: string, topic: TopicName, endpoint: string | null = null): string {
  if (!TOKEN_RE.test(namespace)) throw new InvalidConfigError('namespace', `"${namespace}" is not a valid NATS subject token (non-empty, no whitespace, '.', '*' or '>')`);
  if (!TOKEN_RE.test(component)) throw new InvalidConfigError('component', `"${component}" is not a valid NATS subject token (non-empty, no whitespace, '.', '*' or '>')`);
  if (endpoint === null) return `namespace.${namespace}.component.${component}.${topic}`;
  if (!TOKEN_RE.test(endpoint)) throw new InvalidConfigError('endpoint', `"${endpoint}" is not a valid NATS subject token (non-empty, no whitespace, '.', '*' or '>')`);
  return `namespace.${namespace}.component.${component}.endpoint.${endpoint}.${topic}`;
}
