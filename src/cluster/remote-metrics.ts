/**
 * Merges Prometheus text expositions (the frontend's own and each worker's, fetched over NATS at
 * scrape time) into one: one HELP/TYPE block per family, samples of every source under it. vLLM
 * series keep their labels (worker_id tells ranks apart); process-level series of a remote
 * worker that carry no worker_id get `fleet_worker="{instance}"` so no two series collide.
 */

/** A Backend's metrics() result (text, or the chunks of one) as one string. */
export function expositionText(m: string | readonly Uint8Array[]): string {
  return typeof m === 'string' ? m : Buffer.concat(m as Uint8Array[]).toString('utf8');
}

export interface ExpositionPart {
  readonly text: string;
  /** Label value for samples without worker_id; null = leave samples as they are. */
  readonly fleetWorker: string | null;
}

interface Family {
  help: string | null;
  type: string | null;
  unit: string | null;
  samples: string[];
}

function labelled(line: string, instance: string): string {
  if (line.includes('worker_id="')) return line;
  const brace = line.indexOf('{');
  const space = line.indexOf(' ');
  if (brace >= 0 && (space < 0 || brace < space)) {
    const empty = line[brace + 1] === '}';
    return `${line.slice(0, brace + 1)}fleet_worker="${instance}"${empty ? '' : ','}${line.slice(brace + 1)}`;
  }
  return `${line.slice(0, space)}{fleet_worker="${instance}"}${line.slice(space)}`;
}

/** Merge; with `openMetrics` the parts are OpenMetrics 1.0 and the result ends with one `# EOF`. */
export function mergeExpositions(parts: readonly ExpositionPart[], openMetrics = false): string {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { help: null, type: null, unit: null, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const part of parts) {
    let current: Family | null = null;
    for (const line of part.text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('# HELP ') || line.startsWith('# TYPE ') || line.startsWith('# UNIT ')) {
        const rest = line.slice(7);
        const sp = rest.indexOf(' ');
        const name = sp < 0 ? rest : rest.slice(0, sp);
        current = family(name);
        if (line[2] === 'H') current.help ??= line;
        else if (line[2] === 'T') current.type ??= line;
        else current.unit ??= line;
        continue;
      }
      if (line.startsWith('#')) continue;
      if (current === null) {
        const end = line.search(/[{ ]/);
        current = family(end < 0 ? line : line.slice(0, end));
      }
      current.samples.push(part.fleetWorker === null ? line : labelled(line, part.fleetWorker));
    }
  }
  let out = '';
  for (const f of families.values()) {
    if (f.help !== null) out += `${f.help}\n`;
    if (f.type !== null) out += `${f.type}\n`;
    if (f.unit !== null) out += `${f.unit}\n`;
    for (const s of f.samples) out += `${s}\n`;
  }
  return openMetrics ? `${out}# EOF\n` : out;
}
