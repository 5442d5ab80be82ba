/**
 * CLI flags of the HTTP frontend (yargs option table) and their translation into HttpOptions.
 * Names follow vLLM (`--served-model-name`, `--max-model-len`, `--api-key`) and
 * llm-d-inference-sim (`--failure-injection-rate`, `--failure-types`).
 */
import type { Options } from 'yargs';
import { loadTokenizer } from '../tokenizer/tokenizer.js';
import { InvalidConfigError } from '../util/errors.js';
import { ERROR_FORMATS } from './errors.js';
import type { ErrorFormat } from './errors.js';
import { DEFAULT_EMBEDDING_DIM, DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, DEFAULT_TIMEOUT_KEEP_ALIVE_S, FAILURE_TYPES } from './options.js';
import type { FailureType, HttpOptions } from './options.js';

export const HTTP_FLAGS = {
  host: { type: 'string', default: DEFAULT_HOST, describe: 'HTTP listen address' },
  port: { type: 'number', default: DEFAULT_PORT, describe: 'HTTP port of the fleet endpoint (0 = pick a free port)' },
  'api-key': { type: 'string', describe: 'require "Authorization: Bearer <key>" on /v1/* routes' },
  model: { type: 'string', describe: 'model name clients use when --served-model-name is not given' },
  'served-model-name': { type: 'string', array: true, describe: 'model name(s) accepted in requests and listed by /v1/models' },
  'max-model-len': { type: 'number', describe: 'prompt + max_tokens limit (default: the fleet\'s max model length)' },
  tokenizer: { type: 'string', describe: 'Hugging Face tokenizer.json (or its directory); default: the built-in word tokenizer' },
  'failure-rate': { type: 'number', default: 0, alias: 'failure-injection-rate', describe: 'percentage (0-100) of generate requests answered with an injected error' },
  'failure-types': { type: 'string', array: true, describe: `injected error kinds, repeated or comma-separated: ${FAILURE_TYPES.join(', ')} (default: all)` },
  'max-body-bytes': { type: 'number', default: DEFAULT_MAX_BODY_BYTES, describe: 'larger request bodies answer 413' },
  'timeout-keep-alive': { type: 'number', default: DEFAULT_TIMEOUT_KEEP_ALIVE_S, describe: 'seconds an idle keep-alive connection stays open (uvicorn/vLLM flag; vLLM defaults to 5)' },
  'eos-probability': { type: 'number', default: 0, describe: 'per generated token, the chance a request ends early with finish_reason "stop" (seeded; requests with ignore_eos never do)' },
  'embedding-dim': { type: 'number', default: DEFAULT_EMBEDDING_DIM, describe: 'length of the unit vectors /v1/embeddings answers' },
  'error-format': { type: 'string', default: 'vllm', choices: ERROR_FORMATS, describe: "error bodies: vLLM's (type BadRequestError…, integer code) or OpenAI's (invalid_request_error, string code)" },
} as const satisfies Record<string, Options>;

type Argv = Readonly<Record<string, unknown>>;

function optionalString(argv: Argv, flag: string): string | undefined {
  const v = argv[flag];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new InvalidConfigError(`--${flag}`, `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function optionalInteger(argv: Argv, flag: string, min: number, max: number): number | undefined {
  const v = argv[flag];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new InvalidConfigError(`--${flag}`, `must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function stringList(argv: Argv, flag: string): string[] | undefined {
  const v = argv[flag];
  if (v === undefined || v === null) return undefined;
  const list = Array.isArray(v) ? v : [v];
  const out: string[] = [];
  for (const item of list) {
    if (typeof item !== 'string') throw new InvalidConfigError(`--${flag}`, `must be strings, got ${JSON.stringify(item)}`);
    // Accept both repeated flags and comma-separated values.
    for (const part of item.split(',')) if (part.trim().length > 0) out.push(part.trim());
  }
  return out;
}

/** Parsed argv (kebab-case keys, as yargs provides them) -> HttpOptions; loads --tokenizer. */
export async function httpOptionsFromArgv(argv: Argv): Promise<HttpOptions> {
  const host = optionalString(argv, 'host');
  if (host !== undefined && host.length === 0) throw new InvalidConfigError('--host', 'must not be empty');
  const port = optionalInteger(argv, 'port', 0, 65535);
  const apiKey = optionalString(argv, 'api-key');
  if (apiKey !== undefined && apiKey.length === 0) throw new InvalidConfigError('--api-key', 'must not be empty');
  const model = optionalString(argv, 'model');
  let servedModelNames = stringList(argv, 'served-model-name');
  if (servedModelNames !== undefined && servedModelNames.length === 0) throw new InvalidConfigError('--served-model-name', 'must name at least one model');
  if (servedModelNames === undefined && model !== undefined && model.length > 0) servedModelNames = [model];
  const maxModelLen = optionalInteger(argv, 'max-model-len', 2, Number.MAX_SAFE_INTEGER);
  const failureRateRaw = argv['failure-rate'];
  let failureRate: number | undefined;
  if (failureRateRaw !== undefined && failureRateRaw !== null) {
    if (typeof failureRateRaw !== 'number' || !(failureRateRaw >= 0 && failureRateRaw <= 100)) {
      throw new InvalidConfigError('--failure-rate', `must be a percentage in [0, 100], got ${JSON.stringify(failureRateRaw)}`);
    }
    failureRate = failureRateRaw;
  }
  const typeNames = stringList(argv, 'failure-types');
  let failureTypes: FailureType[] | undefined;
  if (typeNames !== undefined) {
    failureTypes = [];
    for (const t of typeNames) {
      if (!(FAILURE_TYPES as readonly string[]).includes(t)) {
        throw new InvalidConfigError('--failure-types', `unknown type ${JSON.stringify(t)}; expected one of ${FAILURE_TYPES.join(', ')}`);
      }
      failureTypes.push(t as FailureType);
    }
    if (failureTypes.length === 0 && (failureRate ?? 0) > 0) throw new InvalidConfigError('--failure-types', 'must name at least one type');
  }
  const maxBodyBytes = optionalInteger(argv, 'max-body-bytes', 1, Number.MAX_SAFE_INTEGER);
  const seed = argv['seed'];
  if (seed !== undefined && seed !== null && (typeof seed !== 'number' || !Number.isSafeInteger(seed))) {
    throw new InvalidConfigError('--seed', `must be an integer, got ${JSON.stringify(seed)}`);
  }
  const keepAlive = argv['timeout-keep-alive'];
  if (keepAlive !== undefined && keepAlive !== null && (typeof keepAlive !== 'number' || !(keepAlive > 0 && keepAlive <= 86_400))) {
    throw new InvalidConfigError('--timeout-keep-alive', `must be a number of seconds in (0, 86400], got ${JSON.stringify(keepAlive)}`);
  }
  const eos = argv['eos-probability'];
  if (eos !== undefined && eos !== null && (typeof eos !== 'number' || !(eos >= 0 && eos <= 1))) {
    throw new InvalidConfigError('--eos-probability', `must be a probability in [0, 1], got ${JSON.stringify(eos)}`);
  }
  const embeddingDim = optionalInteger(argv, 'embedding-dim', 1, 65536);
  const errorFormat = optionalString(argv, 'error-format');
  if (errorFormat !== undefined && !(ERROR_FORMATS as readonly string[]).includes(errorFormat)) {
    throw new InvalidConfigError('--error-format', `must be one of ${ERROR_FORMATS.join(', ')}, got ${JSON.stringify(errorFormat)}`);
  }
  const tokenizerPath = optionalString(argv, 'tokenizer');
  const tokenizer = await loadTokenizer(tokenizerPath === undefined || tokenizerPath.length === 0 ? null : tokenizerPath);
  return {
    host,
    port,
    apiKey: apiKey ?? null,
    servedModelNames,
    maxModelLen,
    tokenizer,
    failureRate,
    failureTypes,
    maxBodyBytes,
    seed: typeof seed === 'number' ? seed : undefined,
    timeoutKeepAliveS: typeof keepAlive === 'number' ? keepAlive : undefined,
    errorFormat: errorFormat as ErrorFormat | undefined,
    eosProbability: typeof eos === 'number' ? eos : undefined,
    embeddingDim,
  };
}
