/**
 * `mockfleet bench --url URL …`: load-test any OpenAI-compatible server (src/loadgen/README.md).
 * Summary table on stdout, progress on stderr (TTY only), optional --json / --html reports.
 * SIGINT stops the run and still prints and writes the partial report.
 */
import type { ArgumentsCamelCase, Argv, CommandModule, Options } from 'yargs';
import { runBench, DEFAULT_BENCH_OPTIONS, validateBenchOptions } from '../../loadgen/bench.js';
import type { BenchOptions } from '../../loadgen/bench.js';
import { formatSummary, writeBenchReports } from '../../loadgen/output.js';
import { ProgressBar } from '../../loadgen/progress.js';
import { InvalidConfigError } from '../../util/errors.js';

export interface BenchArgs {
  url: string;
  model?: string;
  api: string;
  concurrency?: number;
  requestRate?: number;
  arrival: string;
  burstiness: number;
  isl: number;
  osl: number;
  islStddev: number;
  oslStddev: number;
  sharedPrefixRatio: number;
  numPrefixGroups: number;
  warmup: number;
  duration?: number;
  numRequests?: number;
  seed: number;
  ignoreEos: boolean;
  apiKey?: string;
  json?: string;
  html?: string;
  timeout: number;
  promptFormat: string;
}

const D = DEFAULT_BENCH_OPTIONS;

export const BENCH_FLAG_OPTIONS: Record<string, Options> = {
  url: { type: 'string', demandOption: true, describe: 'server base URL, e.g. http://127.0.0.1:8000' },
  model: { type: 'string', describe: 'model name (default: first id from GET /v1/models)' },
  api: { type: 'string', choices: ['completions', 'chat'], default: D.api, describe: 'endpoint: /v1/completions or /v1/chat/completions' },
  concurrency: { type: 'number', describe: 'closed loop with N requests in flight; with --request-rate, the in-flight cap' },
  'request-rate': { type: 'number', describe: 'open loop: requests per second (see --arrival)' },
  arrival: { type: 'string', choices: ['poisson', 'constant', 'gamma'], default: D.arrival, describe: 'arrival process for --request-rate' },
  burstiness: { type: 'number', default: D.burstiness, describe: 'gamma shape for --arrival gamma (1 = Poisson, <1 burstier)' },
  isl: { type: 'number', default: D.isl, describe: 'input (prompt) tokens per request' },
  osl: { type: 'number', default: D.osl, describe: 'output tokens per request (max_tokens)' },
  'isl-stddev': { type: 'number', default: D.islStddev, describe: 'std-dev of a normal ISL distribution' },
  'osl-stddev': { type: 'number', default: D.oslStddev, describe: 'std-dev of a normal OSL distribution' },
  'shared-prefix-ratio': { type: 'number', default: D.sharedPrefixRatio, describe: 'fraction of the prompt shared within a prefix group' },
  'num-prefix-groups': { type: 'number', default: D.numPrefixGroups, describe: 'number of distinct shared prefixes' },
  warmup: { type: 'number', default: D.warmupS, describe: 'seconds of load before measuring (excluded from metrics)' },
  duration: { type: 'number', describe: 'seconds of measured sending (then in-flight requests finish)' },
  'num-requests': { type: 'number', describe: 'number of measured requests' },
  seed: { type: 'number', default: D.seed, describe: 'seed for prompts, lengths and arrivals' },
  'ignore-eos': { type: 'boolean', default: D.ignoreEos, describe: 'send ignore_eos: true (vLLM)' },
  'api-key': { type: 'string', describe: 'Bearer token for the Authorization header' },
  json: { type: 'string', describe: 'write the JSON report to FILE' },
  html: { type: 'string', describe: 'write the HTML report to FILE' },
  timeout: { type: 'number', default: D.timeoutS, describe: 'per-request timeout, seconds' },
  'prompt-format': { type: 'string', choices: ['auto', 'token-ids', 'text'], default: D.promptFormat, describe: 'prompt encoding; auto probes the server' },
};

/** Flag values -> validated BenchOptions (InvalidConfigError names the flag). */
export function benchOptionsFromArgs(a: BenchArgs): BenchOptions {
  const num = (flag: string, v: unknown): number | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || Number.isNaN(v)) throw new InvalidConfigError(flag, `must be a number, got ${String(v)}`);
    return v;
  };
  if (typeof a.url !== 'string' || a.url === '') throw new InvalidConfigError('--url', 'is required');
  const opts: BenchOptions = {
    url: a.url,
    model: a.model,
    api: a.api as BenchOptions['api'],
    concurrency: num('--concurrency', a.concurrency),
    requestRate: num('--request-rate', a.requestRate),
    arrival: a.arrival as BenchOptions['arrival'],
    burstiness: num('--burstiness', a.burstiness) ?? D.burstiness,
    isl: num('--isl', a.isl) ?? D.isl,
    osl: num('--osl', a.osl) ?? D.osl,
    islStddev: num('--isl-stddev', a.islStddev) ?? D.islStddev,
    oslStddev: num('--osl-stddev', a.oslStddev) ?? D.oslStddev,
    sharedPrefixRatio: num('--shared-prefix-ratio', a.sharedPrefixRatio) ?? D.sharedPrefixRatio,
    numPrefixGroups: num('--num-prefix-groups', a.numPrefixGroups) ?? D.numPrefixGroups,
    warmupS: num('--warmup', a.warmup) ?? D.warmupS,
    durationS: num('--duration', a.duration),
    numRequests: num('--num-requests', a.numRequests),
    seed: num('--seed', a.seed) ?? D.seed,
    ignoreEos: a.ignoreEos,
    apiKey: a.apiKey,
    timeoutS: num('--timeout', a.timeout) ?? D.timeoutS,
    promptFormat: a.promptFormat as BenchOptions['promptFormat'],
  };
  validateBenchOptions(opts);
  return opts;
}

export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench',
  describe: 'Load-test an OpenAI-compatible server (mockfleet, vLLM, a gateway)',
  builder: (y: Argv<object>) => y.options(BENCH_FLAG_OPTIONS) as unknown as Argv<BenchArgs>,
  handler: async (argv: ArgumentsCamelCase<BenchArgs>) => {
    const opts = benchOptionsFromArgs(argv);
    const ac = new AbortController();
    const onSigint = (): void => {
      if (ac.signal.aborted) {
        process.stderr.write('mockfleet bench: second SIGINT, exiting now\n');
        process.exit(130);
      }
      process.stderr.write('\nmockfleet bench: interrupted, reporting what was measured\n');
      ac.abort();
    };
    process.on('SIGINT', onSigint);
    const bar = new ProgressBar(process.stderr);
    try {
      const result = await runBench(opts, {
        signal: ac.signal,
        onProgress: bar.enabled ? (p) => bar.update(p) : undefined,
        onNote: (n) => process.stderr.write(`mockfleet bench: ${n}\n`),
      });
      bar.done();
      process.stdout.write(formatSummary(result) + '\n');
      await writeBenchReports(result, { json: argv.json, html: argv.html });
      if (argv.json !== undefined) process.stderr.write(`mockfleet bench: JSON report written to ${argv.json}\n`);
      if (argv.html !== undefined) process.stderr.write(`mockfleet bench: HTML report written to ${argv.html}\n`);
      if (result.partial) process.exitCode = 130;
      else if (result.metrics.completed === 0) process.exitCode = 1;
    } finally {
      bar.done();
      process.off('SIGINT', onSigint);
    }
  },
};
