/**
 * Child processes for tests: every wait is bounded and fails fast. A child that exits before the
 * awaited line, or a wait that runs out of time, rejects with the command and the tail of the
 * child's stderr, so a broken child turns into a test failure in seconds, never a hang. Children
 * still running when the test process exits are killed.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess, SpawnOptions } from 'node:child_process';

const STDERR_TAIL_CHARS = 8000;

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class TestChild {
  readonly child: ChildProcess;
  readonly what: string;
  private out = '';
  private err = '';
  private readonly exitP: Promise<ExitStatus>;
  private status: ExitStatus | null = null;

  constructor(cmd: string, args: readonly string[], opts: SpawnOptions = {}) {
    this.what = [cmd, ...args].join(' ');
    this.child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(this.child);
    this.child.stdout!.setEncoding('utf8');
    this.child.stderr!.setEncoding('utf8');
    this.child.stdout!.on('data', (s: string) => (this.out += s));
    this.child.stderr!.on('data', (s: string) => {
      this.err += s;
      if (this.err.length > 4 * STDERR_TAIL_CHARS) this.err = this.err.slice(-STDERR_TAIL_CHARS);
    });
    this.exitP = new Promise((resolve) => {
      const done = (status: ExitStatus): void => {
        if (this.status !== null) return;
        this.status = status;
        live.delete(this.child);
        resolve(status);
      };
      this.child.once('exit', (code, signal) => done({ code, signal }));
      // spawn failures (ENOENT) emit 'error' and no 'exit'.
      this.child.once('error', (e) => {
        this.err += `\nspawn error: ${e.message}`;
        done({ code: null, signal: null });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  stdout(): string {
    return this.out;
  }

  stderrTail(): string {
    return this.err.slice(-STDERR_TAIL_CHARS);
  }

  /** Exit status once the child ended, or null while it runs. */
  exitStatus(): ExitStatus | null {
    return this.status;
  }

  private failure(why: string): Error {
    return new Error(`${this.what}: ${why}; stderr tail:\n${this.stderrTail()}`);
  }

  /**
   * Resolves with `pick(stdout so far)` as soon as it returns non-null; rejects when the child
   * exits first or after `timeoutMs`. `pick` sees everything printed so far and must only accept
   * complete lines.
   */
  waitFor<T>(pick: (stdout: string) => T | null, what: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.child.stdout!.off('data', check);
        fn();
      };
      const check = (): void => {
        let v: T | null;
        try {
          v = pick(this.out);
        } catch (e) {
          finish(() => reject(this.failure(`bad ${what}: ${e instanceof Error ? e.message : String(e)}`)));
          return;
        }
        if (v !== null) finish(() => resolve(v as T));
      };
      const timer = setTimeout(() => finish(() => reject(this.failure(`no ${what} within ${timeoutMs} ms`))), timeoutMs);
      this.child.stdout!.on('data', check);
      void this.exitP.then((s) => {
        // Let the stdout data that raced the exit be seen first.
        setImmediate(() => {
          check();
          finish(() => reject(this.failure(`exited (code ${s.code}, signal ${s.signal}) before ${what}`)));
        });
      });
      check();
    });
  }

  /** Resolves with the exit status (at once if the child already ended); rejects after `timeoutMs`. */
  waitExit(timeoutMs: number): Promise<ExitStatus> {
    if (this.status !== null) return Promise.resolve(this.status);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(this.failure(`did not exit within ${timeoutMs} ms`)), timeoutMs);
      void this.exitP.then((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }

  /** Sends `signal` (if still running) and waits up to `timeoutMs` for the exit, then SIGKILLs. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<ExitStatus> {
    if (this.status !== null) return this.status;
    this.child.kill(signal);
    try {
      return await this.waitExit(timeoutMs);
    } catch (e) {
      this.child.kill('SIGKILL');
      await this.exitP;
      throw e;
    }
  }
}

/** Complete lines matching `re` in `text` (a trailing line without its newline is ignored). */
export function completeLineMatch(text: string, re: RegExp): RegExpExecArray | null {
  const end = text.lastIndexOf('\n');
  if (end < 0) return null;
  return re.exec(text.slice(0, end + 1));
}
