#!/usr/bin/env node
/**
 * mockfleet command line: serve | worker | bench | replay | trace stats.
 * Usage errors (bad flags, bad input files) print a message and exit 2; other failures exit 1.
 */
import { readFileSync } from 'node:fs';
import yargs from 'yargs';
import type { MiddlewareFunction } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { parse as parseYaml } from 'yaml';
import { serveCommand } from './commands/serve.js';
import { benchCommand } from './commands/bench.js';
import { replayCommand } from './commands/replay.js';
import { traceCommand } from './commands/trace.js';
import { workerCommand } from './commands/worker.js';
import { InvalidConfigError, MockfleetError } from '../util/errors.js';
import { exitCodeFor } from './exit.js';
import { ignoreUnknownEnvFlags } from './env.js';

/** --config FILE: YAML or JSON whose keys are flag names. */
function loadConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidConfigError('--config', `cannot read ${path}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new InvalidConfigError('--config', `${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidConfigError('--config', `${path} must hold a mapping of flag names to values`);
  }
  return value as Record<string, unknown>;
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('mockfleet')
    .usage('$0 <command> [options]')
    .command(serveCommand)
    .command(benchCommand)
    .command(replayCommand)
    .command(traceCommand)
    .command(workerCommand)
    .config('config', 'YAML or JSON file whose keys are flag names (flags and MOCKFLEET_* env override it)', loadConfigFile)
    .env('MOCKFLEET')
    .middleware(ignoreUnknownEnvFlags(process.env, hideBin(process.argv), (line) => process.stderr.write(`${line}\n`)) as unknown as MiddlewareFunction, true)
    .demandCommand(1, 'name a command: serve, worker, bench, replay or trace')
    .strict()
    .recommendCommands()
    .help()
    .version()
    .wrap(Math.min(120, process.stdout.columns ?? 100))
    .fail((msg: string | null, err: Error | undefined) => {
      if (err !== undefined && err !== null && err.name === 'YError') {
        // yargs' own usage errors (and --config parser failures it wraps): a message, exit 2.
        process.stderr.write(`mockfleet: ${err.message}\nRun with --help for usage.\n`);
        process.exit(2);
      }
      if (err !== undefined && err !== null) {
        process.stderr.write(`mockfleet: ${err instanceof MockfleetError ? err.message : err.stack ?? String(err)}\n`);
        process.exit(exitCodeFor(err));
      }
      process.stderr.write(`mockfleet: ${msg ?? 'invalid usage'}\nRun with --help for usage.\n`);
      process.exit(2);
    })
    .parseAsync();
}

main().catch((err: unknown) => {
  process.stderr.write(`mockfleet: ${err instanceof MockfleetError ? err.message : err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(exitCodeFor(err));
});
