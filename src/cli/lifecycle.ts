/**
 * Signal handling of the long-running commands (serve, serve --fleet, worker): the first SIGTERM
 * or SIGINT drains (`close()`, bounded by --drain-timeout inside it) and exits 0, or 1 if the
 * shutdown failed; a second signal exits 130 at once.
 */
import { MockfleetError } from '../util/errors.js';

export function exitOnSignals(handle: { close(): Promise<void> }, drainTimeoutS: number): void {
  let signals = 0;
  const stop = (sig: string): void => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`mockfleet: second ${sig}, exiting now\n`);
      process.exit(130);
    }
    process.stderr.write(`mockfleet: ${sig}, draining (up to ${drainTimeoutS} s)\n`);
    handle.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`mockfleet: shutdown failed: ${err instanceof MockfleetError ? err.message : String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
