/**
 * `mockfleet trace stats TRACE [--json] [--trace-block-size 512]`: request count, input/output
 * length distributions, span and ideal prefix reuse of a Mooncake trace (src/trace/README.md).
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { computeTraceStats, DEFAULT_TRACE_BLOCK_SIZE, readMooncakeTrace } from '../../trace/mooncake.js';
import type { TraceStats } from '../../trace/mooncake.js';
import { summaryToJson } from '../../report/stats.js';
import type { Summary } from '../../report/stats.js';
import { fmt, renderTable } from '../../report/table.js';
import { InvalidConfigError } from '../../util/errors.js';
import { synthesizeTraceToFile } from '../../trace/synth.js';
import { fileURLToPath } from 'node:url';

interface TraceStatsArgs {
  trace: string;
  json: boolean;
  traceBlockSize: number;
}

/** Validated --trace-block-size (shared with `replay`). */
export function checkTraceBlockSize(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new InvalidConfigError('--trace-block-size', `must be a positive integer, got ${String(v)}`);
  }
  return v;
}

export function traceStatsToJson(path: string, s: TraceStats): Record<string, unknown> {
  const nn = (v: number): number | null => (Number.isFinite(v) ? v : null);
  return {
    trace: path,
    requests: s.requests,
    trace_block_size: s.traceBlockSize,
    sessions: s.sessions,
    total_input_tokens: s.totalInputTokens,
    total_output_tokens: s.totalOutputTokens,
    input_length: summaryToJson(s.input),
    output_length: summaryToJson(s.output),
    first_timestamp_ms: nn(s.firstTimestampMs),
    last_timestamp_ms: nn(s.lastTimestampMs),
    span_ms: s.spanMs,
    mean_arrival_rps: nn(s.meanArrivalRps),
    ideal_reused_input_tokens: s.idealReusedInputTokens,
    ideal_prefix_reuse_ratio: nn(s.idealPrefixReuseRatio),
  };
}

export function renderTraceStats(path: string, s: TraceStats): string {
  const dist = (name: string, d: Summary): Array<string | number> => [
    name, fmt(d.mean, 1), fmt(d.p50, 0), fmt(d.p90, 0), fmt(d.p99, 0), fmt(d.min, 0), fmt(d.max, 0),
  ];
  const lengths = renderTable(
    ['Tokens per request', 'mean', 'p50', 'p90', 'p99', 'min', 'max'],
    [dist('input (clamped)', s.input), dist('output', s.output)],
  );
  const summary = renderTable(
    ['Trace', 'value'],
    [
      ['file', path],
      ['requests', fmt(s.requests, 0)],
      ['sessions', fmt(s.sessions, 0)],
      ['trace block size', fmt(s.traceBlockSize, 0)],
      ['total input tokens', fmt(s.totalInputTokens, 0)],
      ['total output tokens', fmt(s.totalOutputTokens, 0)],
      ['span (ms)', fmt(s.spanMs, 0)],
      ['mean arrival rate (req/s)', fmt(s.meanArrivalRps, 3)],
      ['ideal reused input tokens', fmt(s.idealReusedInputTokens, 0)],
      ['ideal prefix reuse ratio', fmt(s.idealPrefixReuseRatio, 4)],
    ],
  );
  return `${summary}\n${lengths}\n`;
}

const statsCommand: CommandModule<object, TraceStatsArgs> = {
  command: 'stats <trace>',
  describe: 'Summarize a Mooncake JSONL trace',
  builder: (y: Argv<object>) =>
    y
      .positional('trace', { type: 'string', demandOption: true, describe: 'Mooncake JSONL trace file' })
      .options({
        json: { type: 'boolean', default: false, describe: 'Print one JSON object instead of tables' },
        'trace-block-size': { type: 'number', default: DEFAULT_TRACE_BLOCK_SIZE, describe: 'Tokens per trace hash id' },
      }) as unknown as Argv<TraceStatsArgs>,
  handler: async (argv: ArgumentsCamelCase<TraceStatsArgs>) => {
    const blockSize = checkTraceBlockSize(argv.traceBlockSize);
    const reqs = await readMooncakeTrace(argv.trace);
    const stats = computeTraceStats(reqs, blockSize);
    process.stdout.write(argv.json ? `${JSON.stringify(traceStatsToJson(argv.trace, stats))}\n` : renderTraceStats(argv.trace, stats));
  },
};

interface TraceSynthArgs {
  like: string;
  duration: string;
  rateScale: number;
  prefixLenMultiplier: number;
  promptLenMultiplier: number;
  seed: number;
  out: string;
  traceBlockSize: number;
}

/** `24h`, `90m`, `3600s`, `250ms` or a plain number of seconds → ms. */
export function parseDurationMs(flag: string, v: unknown): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(String(v));
  if (m === null) throw new InvalidConfigError(flag, `must be a duration like 24h, 90m, 3600s or 500ms, got ${JSON.stringify(v)}`);
  const unit = m[2] ?? 's';
  const ms = Number(m[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : unit === 'h' ? 3_600_000 : 86_400_000);
  if (!(ms > 0)) throw new InvalidConfigError(flag, `must be > 0, got ${JSON.stringify(v)}`);
  return ms;
}

/** `conversation` / `synthetic` name the traces shipped in data/mooncake; anything else is a path. */
export function resolveTraceName(v: string): string {
  if (v === 'conversation' || v === 'synthetic') return fileURLToPath(new URL(`../../../../data/mooncake/${v}_trace.jsonl`, import.meta.url));
  return v;
}

const synthCommand: CommandModule<object, TraceSynthArgs> = {
  command: 'synth',
  describe: "Synthesize a Mooncake trace with a source trace's statistics (after Dynamo's datagen synthesize)",
  builder: (y: Argv<object>) =>
    y.options({
      like: { type: 'string', demandOption: true, describe: 'Source trace: a path, or conversation / synthetic (shipped)' },
      duration: { type: 'string', demandOption: true, describe: 'Span of the output, e.g. 24h, 90m, 3600s' },
      'rate-scale': { type: 'number', default: 1, describe: "Arrival rate relative to the source's" },
      'prefix-len-multiplier': { type: 'number', default: 1, describe: 'Stretch shared-prefix (core) chains by this factor' },
      'prompt-len-multiplier': { type: 'number', default: 1, describe: 'Scale unique prompt (leaf) lengths by this factor' },
      seed: { type: 'number', default: 0, describe: 'Random seed (same seed, same trace)' },
      out: { type: 'string', demandOption: true, describe: 'Output JSONL file' },
      'trace-block-size': { type: 'number', default: DEFAULT_TRACE_BLOCK_SIZE, describe: 'Tokens per trace hash id' },
    }) as unknown as Argv<TraceSynthArgs>,
  handler: async (argv: ArgumentsCamelCase<TraceSynthArgs>) => {
    const opts = {
      durationMs: parseDurationMs('--duration', argv.duration),
      rateScale: argv.rateScale,
      prefixLenMultiplier: argv.prefixLenMultiplier,
      promptLenMultiplier: argv.promptLenMultiplier,
      seed: argv.seed,
      traceBlockSize: checkTraceBlockSize(argv.traceBlockSize),
    };
    const source = await readMooncakeTrace(resolveTraceName(argv.like));
    const t0 = performance.now();
    const s = await synthesizeTraceToFile(source, opts, argv.out);
    const secs = (performance.now() - t0) / 1000;
    process.stderr.write(`wrote ${argv.out}: ${s.requests} requests, ${s.sessions} sessions, span ${(s.spanMs / 1000).toFixed(0)} s, ${(s.bytes / 1048576).toFixed(1)} MiB in ${secs.toFixed(1)} s\n`);
  },
};

export const traceCommand: CommandModule<object, object> = {
  command: 'trace',
  describe: 'Inspect and synthesize request traces (trace stats TRACE, trace synth --like TRACE …)',
  builder: (y: Argv<object>) => y.command(statsCommand).command(synthCommand).demandCommand(1, 'name a trace subcommand: stats, synth'),
  handler: () => {
    // Unreachable: demandCommand(1) rejects a bare `trace` before any handler runs.
  },
};
