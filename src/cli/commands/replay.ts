/**
 * `mockfleet replay TRACE --offline | --url URL`: replay a Mooncake trace.
 * --offline runs W × D engines and the router on a virtual clock in this process
 * (src/replay/offline.ts); --url sends the trace to a running server (src/loadgen/online-replay.ts).
 * Both print the Dynamo-style report table on stdout and write JSON / HTML on request.
 */
import { writeFile } from 'node:fs/promises';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { ENGINE_FLAG_OPTIONS } from '../../config/engine-flags.js';
import type { EngineFlagValues } from '../../config/engine-flags.js';
import type { EngineArgs, PreemptionMode } from '../../engine/types.js';
import { loadInterpolatedPerfModel } from '../../perf/profile-loader.js';
import { runOnlineReplay } from '../../loadgen/online-replay.js';
import type { OnlineReplayProgress } from '../../loadgen/online-replay.js';
import { renderHtmlReport } from '../../report/html.js';
import { runOfflineReplay } from '../../replay/offline.js';
import { buildReplayReport, renderReplayReport, replayHtmlInput, sketchSamples } from '../../replay/report.js';
import { DEFAULT_KV_OVERLAP_SCORE_WEIGHT, ROUTER_POLICY_NAMES, parseRouterPolicy } from '../../router/router.js';
import type { RouterPolicy } from '../../router/types.js';
import { DEFAULT_TRACE_BLOCK_SIZE, readMooncakeTrace } from '../../trace/mooncake.js';
import { InvalidConfigError } from '../../util/errors.js';
import { checkTraceBlockSize } from './trace.js';

interface ReplayArgs extends EngineFlagValues {
  trace: string;
  offline: boolean;
  url?: string | undefined;
  model?: string | undefined;
  numWorkers: number;
  dataParallelSize: number;
  router: string;
  kvOverlapScoreWeight: number;
  routerTemperature?: number | undefined;
  traceBlockSize: number;
  arrivalSpeedupRatio: number;
  numRequests?: number | undefined;
  json?: string | undefined;
  html?: string | undefined;
}

/** Dynamo replay spells the KV policy `kv_router`. */
function routerFromFlag(v: string): RouterPolicy {
  return parseRouterPolicy(v === 'kv_router' ? 'kv' : v);
}

function optionalPositiveInt(field: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 1) throw new InvalidConfigError(field, `must be a positive integer, got ${String(v)}`);
  return v;
}

/** Engine flags → Partial<EngineArgs> (normalizeEngineArgs fills defaults and validates). */
function engineArgsFromFlags(a: ReplayArgs): Partial<EngineArgs> {
  const out: { -readonly [K in keyof EngineArgs]?: EngineArgs[K] } = {};
  if (a.numGpuBlocks !== undefined) out.numGpuBlocks = a.numGpuBlocks;
  if (a.blockSize !== undefined) out.blockSize = a.blockSize;
  if (a.maxNumSeqs !== undefined) out.maxNumSeqs = a.maxNumSeqs;
  if (a.maxNumBatchedTokens !== undefined) out.maxNumBatchedTokens = a.maxNumBatchedTokens;
  if (a.enablePrefixCaching !== undefined) out.enablePrefixCaching = a.enablePrefixCaching;
  if (a.enableChunkedPrefill !== undefined) out.enableChunkedPrefill = a.enableChunkedPrefill;
  if (a.preemptionMode !== undefined) out.preemptionMode = a.preemptionMode as PreemptionMode;
  if (a.seed !== undefined) out.seed = a.seed;
  return out;
}

export async function runReplayCommand(a: ReplayArgs, stdout: (s: string) => void, stderr: (s: string) => void): Promise<void> {
  const traceBlockSize = checkTraceBlockSize(a.traceBlockSize);
  const numRequests = optionalPositiveInt('--num-requests', a.numRequests);
  const hasUrl = a.url !== undefined && a.url !== '';
  if (a.offline && hasUrl) throw new InvalidConfigError('--offline', 'choose one of --offline and --url');
  if (!a.offline && !hasUrl) throw new InvalidConfigError('--offline', 'pass --offline (virtual-time simulation) or --url URL (replay against a server)');

  if (hasUrl) {
    // Ctrl-C cancels what is in flight and still prints the report of what finished.
    const ac = new AbortController();
    const onSigint = (): void => {
      if (ac.signal.aborted) process.exit(130);
      stderr('\nmockfleet replay: interrupted, reporting what finished (Ctrl-C again to quit)\n');
      ac.abort();
    };
    process.on('SIGINT', onSigint);
    const tty = process.stderr.isTTY === true;
    let drawn = false;
    const report = await runOnlineReplay({
      signal: ac.signal,
      ...(tty
        ? {
            onProgress: (p: OnlineReplayProgress) => {
              const f = p.total === 0 ? 1 : p.finished / p.total;
              const fill = Math.round(f * 28);
              process.stderr.write(`\r\x1b[2K${'█'.repeat(fill)}${'░'.repeat(28 - fill)} ${String(Math.round(f * 100)).padStart(3)}% ${p.finished}/${p.total}  err ${p.failed}  in-flight ${p.inflight}  ${p.elapsedS.toFixed(1)}s`);
              drawn = true;
            },
          }
        : {}),
      url: a.url as string,
      tracePath: a.trace,
      traceBlockSize,
      arrivalSpeedupRatio: a.arrivalSpeedupRatio,
      ...(a.model === undefined ? {} : { model: a.model }),
      ...(a.json === undefined ? {} : { json: a.json }),
      ...(a.html === undefined ? {} : { html: a.html }),
      ...(numRequests === undefined ? {} : { numRequests }),
      onNote: (note) => stderr(`${note}\n`),
    });
    process.off('SIGINT', onSigint);
    if (drawn) process.stderr.write('\r\x1b[2K');
    stdout(renderReplayReport(report, `mockfleet online replay → ${a.url as string}${ac.signal.aborted ? ' (interrupted: partial)' : ''}`));
    if (ac.signal.aborted) process.exitCode = 130;
    return;
  }

  const router = routerFromFlag(a.router);
  const perfModel = a.plannerProfileData === undefined || a.plannerProfileData === '' ? undefined : loadInterpolatedPerfModel(a.plannerProfileData);
  let reqs = await readMooncakeTrace(a.trace);
  if (numRequests !== undefined) reqs = reqs.slice(0, numRequests);
  const tty = process.stderr.isTTY === true;
  let drawn = false;
  const result = runOfflineReplay(reqs, {
    ...(tty
      ? {
          onProgress: (simMs: number, arrived: number, total: number) => {
            const f = total === 0 ? 1 : arrived / total;
            const fill = Math.round(f * 28);
            process.stderr.write(`\r\x1b[2K${'█'.repeat(fill)}${'░'.repeat(28 - fill)} ${String(Math.round(f * 100)).padStart(3)}% arrived ${arrived}/${total}  simulated ${(simMs / 1000).toFixed(0)} s`);
            drawn = true;
          },
        }
      : {}),
    numWorkers: a.numWorkers,
    dataParallelSize: a.dataParallelSize,
    router,
    kvOverlapScoreWeight: a.kvOverlapScoreWeight,
    routerTemperature: a.routerTemperature ?? 0,
    traceBlockSize,
    arrivalSpeedupRatio: a.arrivalSpeedupRatio,
    speedupRatio: a.speedupRatio ?? 1,
    decodeSpeedupRatio: a.decodeSpeedupRatio ?? 1,
    engineArgs: engineArgsFromFlags(a),
    seed: a.seed ?? 0,
    ...(perfModel === undefined ? {} : { perfModel }),
  });
  if (drawn) process.stderr.write('\r\x1b[2K');
  const report = buildReplayReport(result);
  const config = {
    mode: 'offline',
    trace: a.trace,
    router,
    num_workers: a.numWorkers,
    data_parallel_size: a.dataParallelSize,
    num_ranks: result.numRanks,
    kv_overlap_score_weight: a.kvOverlapScoreWeight,
    router_temperature: a.routerTemperature ?? 0,
    trace_block_size: traceBlockSize,
    arrival_speedup_ratio: a.arrivalSpeedupRatio,
    speedup_ratio: a.speedupRatio ?? 1,
    decode_speedup_ratio: a.decodeSpeedupRatio ?? 1,
    engine_args: {
      num_gpu_blocks: result.engineArgs.numGpuBlocks,
      block_size: result.engineArgs.blockSize,
      max_num_seqs: result.engineArgs.maxNumSeqs,
      max_num_batched_tokens: result.engineArgs.maxNumBatchedTokens,
      enable_prefix_caching: result.engineArgs.enablePrefixCaching,
      enable_chunked_prefill: result.engineArgs.enableChunkedPrefill,
      preemption_mode: result.engineArgs.preemptionMode,
      seed: result.engineArgs.seed,
    },
    planner_profile_data: a.plannerProfileData ?? null,
    num_passes: result.numPasses,
    num_preemptions: result.numPreemptions,
  };
  if (a.json !== undefined) await writeFile(a.json, `${JSON.stringify({ ...report, ...config }, null, 2)}\n`);
  if (a.html !== undefined) {
    const subtitle = `${a.trace} · ${result.numRanks} rank(s) (${a.numWorkers} × ${a.dataParallelSize}) · router ${router} · arrival speedup ${a.arrivalSpeedupRatio}× · speedup ${a.speedupRatio ?? 1}×`;
    await writeFile(a.html, renderHtmlReport(replayHtmlInput(report, result, sketchSamples(result), subtitle)));
  }
  stdout(renderReplayReport(report, `mockfleet offline replay: ${result.numRanks} rank(s), router ${router}`));
  const wallS = result.wallTimeMs / 1000;
  stdout(`simulated ${report.num_requests} requests (${(report.duration_ms / 1000).toFixed(1)} s of traffic) in ${wallS.toFixed(2)} s wall: ${wallS > 0 ? Math.round(report.num_requests / wallS) : 'n/a'} simulated requests per wall second\n`);
}

export const replayCommand: CommandModule<object, ReplayArgs> = {
  command: 'replay <trace>',
  describe: 'Replay a Mooncake JSONL trace offline (virtual time) or against a server',
  builder: (y: Argv<object>) =>
    y
      .positional('trace', { type: 'string', demandOption: true, describe: 'Mooncake JSONL trace file' })
      .options({
        ...ENGINE_FLAG_OPTIONS,
        offline: { type: 'boolean', default: false, describe: 'Simulate engines and router on a virtual clock in this process', group: 'Replay:' },
        url: { type: 'string', describe: 'Replay against this OpenAI-compatible server instead (online)', group: 'Replay:' },
        model: { type: 'string', describe: 'Online: model name (default: probe /v1/models)', group: 'Replay:' },
        'trace-block-size': { type: 'number', default: DEFAULT_TRACE_BLOCK_SIZE, describe: 'Tokens per trace hash id', group: 'Replay:' },
        'arrival-speedup-ratio': { type: 'number', default: 1, describe: 'Divide trace arrival times by this', group: 'Replay:' },
        'num-requests': { type: 'number', describe: 'Replay only the first N requests of the trace', group: 'Replay:' },
        json: { type: 'string', describe: 'Write the report as JSON to this file', group: 'Replay:' },
        html: { type: 'string', describe: 'Write a self-contained HTML report to this file', group: 'Replay:' },
        'num-workers': { type: 'number', default: 1, describe: 'Offline: simulated workers', group: 'Fleet:' },
        'data-parallel-size': { type: 'number', default: 1, describe: 'Offline: ranks per worker', group: 'Fleet:' },
        router: {
          type: 'string',
          default: 'round_robin',
          choices: [...ROUTER_POLICY_NAMES, 'kv_router'],
          describe: 'Offline: routing policy (kv_router = kv)',
          group: 'Fleet:',
        },
        'kv-overlap-score-weight': {
          type: 'number',
          default: DEFAULT_KV_OVERLAP_SCORE_WEIGHT,
          describe: 'kv router: weight of prefill blocks against decode blocks in the cost',
          group: 'Fleet:',
        },
        'router-temperature': {
          type: 'number',
          default: 0,
          describe: 'kv router: 0 = lowest cost; > 0 = softmax sampling over normalised costs (seeded by --seed)',
          group: 'Fleet:',
        },
      }) as unknown as Argv<ReplayArgs>,
  handler: async (argv: ArgumentsCamelCase<ReplayArgs>) => {
    await runReplayCommand(argv, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
  },
};
