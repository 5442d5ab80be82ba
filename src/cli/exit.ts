import { MockfleetError } from '../util/errors.js';

/** Usage errors (bad flags, config, input files, requests) exit 2; anything else exits 1. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof MockfleetError && err.status >= 400 && err.status < 500) return 2;
  return 1;
}
