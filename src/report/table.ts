/** Aligned plain-text tables for terminal summaries (AIPerf-style). */

export type Align = 'left' | 'right';

export interface TableOptions {
  /** Per-column alignment; default: first column left, the rest right. */
  align?: readonly Align[];
  /** Title printed above the table. */
  title?: string;
}

/** Render rows under headers with box-drawing rules; cells are stringified as given. */
export function renderTable(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>, opts: TableOptions = {}): string {
  const ncol = headers.length;
  const cells: string[][] = rows.map((r) => {
    const out: string[] = [];
    for (let c = 0; c < ncol; c++) {
      const v = r[c];
      out.push(v === undefined ? '' : String(v));
    }
    return out;
  });
  const width: number[] = headers.map((h) => h.length);
  for (const r of cells) {
    for (let c = 0; c < ncol; c++) width[c] = Math.max(width[c] as number, (r[c] as string).length);
  }
  const alignOf = (c: number): Align => opts.align?.[c] ?? (c === 0 ? 'left' : 'right');
  const pad = (s: string, c: number): string => (alignOf(c) === 'left' ? s.padEnd(width[c] as number) : s.padStart(width[c] as number));
  const line = (l: string, m: string, r: string): string => l + width.map((w) => '─'.repeat(w + 2)).join(m) + r;
  const row = (r: readonly string[]): string => '│' + r.map((s, c) => ` ${pad(s, c)} `).join('│') + '│';
  const out: string[] = [];
  if (opts.title !== undefined) out.push(opts.title);
  out.push(line('┌', '┬', '┐'), row(headers), line('├', '┼', '┤'));
  for (const r of cells) out.push(row(r));
  out.push(line('└', '┴', '┘'));
  return out.join('\n');
}

/** Fixed-precision number for tables; non-finite values (no samples) print as "n/a". */
export function fmt(v: number, digits = 2): string {
  if (!Number.isFinite(v)) return 'n/a';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
