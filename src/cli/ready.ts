/**
 * The readiness announcement of long-running commands: one `mockfleet ready {json}` line on
 * stdout, and with `--ready-file PATH` the same JSON in a file. At thousands of ranks the line is
 * hundreds of KiB, which a pipe delivers in several chunks: readers must act only on a complete
 * line (see `parseReadyLine`). The file is written to a temporary name and renamed, so a reader
 * polling for it never sees a partial document.
 */
import { renameSync, writeFileSync } from 'node:fs';
import type { Options } from 'yargs';
import { InvalidConfigError } from '../util/errors.js';

export const READY_PREFIX = 'mockfleet ready ';

export const READY_FLAGS = {
  'ready-file': { type: 'string', describe: 'Also write the ready JSON to this file (atomically) when everything accepts traffic', group: 'Server:' },
} as const satisfies Record<string, Options>;

/** Print the ready line and, when `readyFile` is set, write the same JSON there. */
export function announceReady(info: object, readyFile: string | undefined): void {
  const json = JSON.stringify(info);
  if (readyFile !== undefined && readyFile !== '') {
    const tmp = `${readyFile}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, `${json}\n`);
      renameSync(tmp, readyFile);
    } catch (err) {
      throw new InvalidConfigError('--ready-file', `cannot write ${readyFile}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  process.stdout.write(`${READY_PREFIX}${json}\n`);
}

/**
 * The JSON of the first complete ready line in `text` (stdout read so far), or null while none
 * has arrived whole. A line without its newline is never parsed.
 */
export function parseReadyLine<T = Record<string, unknown>>(text: string): T | null {
  let at = 0;
  if (!text.startsWith(READY_PREFIX)) {
    const i = text.indexOf(`\n${READY_PREFIX}`);
    if (i < 0) return null;
    at = i + 1;
  }
  const nl = text.indexOf('\n', at);
  if (nl < 0) return null;
  return JSON.parse(text.slice(at + READY_PREFIX.length, nl)) as T;
}
