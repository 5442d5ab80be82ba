/** One-line progress bar on a TTY stream (stderr); silent on anything else. */
import type { BenchProgress } from './bench.js';

const BAR = 28;

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  readonly enabled: boolean;
  private drawn: boolean;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.stream = stream;
    this.enabled = stream.isTTY === true;
    this.drawn = false;
  }

  update(p: BenchProgress): void {
    if (!this.enabled) return;
    const f = Number.isFinite(p.fraction) ? p.fraction : 0;
    const fill = Math.round(f * BAR);
    const bar = '█'.repeat(fill) + '░'.repeat(BAR - fill);
    const pct = Number.isFinite(p.fraction) ? `${Math.round(f * 100)}%`.padStart(4) : '   ?';
    const line = `${bar} ${pct} ${p.phase.padEnd(7)} ${p.elapsedS.toFixed(1)}s  ok ${p.completed}  err ${p.failed}  in-flight ${p.inflight}  ${p.requestRate.toFixed(1)} req/s`;
    this.stream.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  done(): void {
    if (this.enabled && this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}
