/**
 * Synthetic Mooncake traces "like" a source trace, after Dynamo's prefix data generator
 * (`benchmarks/prefix_data_generator/synthesizer.py`, "datagen synthesize"); see
 * src/trace/README.md, "Synthesis". Own implementation:
 *
 * - **Prefix tree.** The source's first turns form a trie of cumulative block prefixes. A node
 *   visited by ≥ 2 requests is *core* (shared context); a request's blocks after its last core node
 *   are its unique *leaf* (user prompt). A request walks the core tree from the root: at node u it
 *   moves to core child c with probability visits(c) / visits(u), stops and appends a fresh leaf
 *   with probability leafs(u) / visits(u), or stops without one. Core nodes keep stable synthetic
 *   ids (shared prefixes stay shared), leaf blocks get new ids (new leaves are new).
 * - **Lengths.** Leaf block counts, the tokens in a request's last block, and output lengths are
 *   drawn from the source's empirical distributions. `prefixLenMultiplier` stretches core chains
 *   (runs of nodes that always continue to one child) to round(L × M) blocks (≥ 1);
 *   `promptLenMultiplier` scales leaf lengths (≥ 1 block).
 * - **Arrivals.** Requests that share a timestamp arrive together: group sizes and the gaps
 *   between distinct timestamps are drawn from the source (burstiness), the gaps divided by
 *   `rateScale`, until `durationMs`.
 * - **Sessions.** A source session's turn count, inter-turn delays and blocks added per turn are
 *   drawn from the source; a later turn extends the previous turn's blocks with fresh ones. A
 *   trace without sessions yields none.
 *
 * Writing is streamed: memory is the source's tree, whatever the output size.
 */
import { createWriteStream } from 'node:fs';
import type { TraceRequest } from './mooncake.js';
import { ChildTable } from './child-table.js';
import { InvalidConfigError } from '../util/errors.js';
import { TextWriter } from '../util/text-writer.js';

export interface SynthOptions {
  /** Output span: arrivals at t ∈ [0, durationMs). */
  durationMs: number;
  /** Arrival rate multiplier (gaps between arrival groups are divided by it). */
  rateScale: number;
  prefixLenMultiplier: number;
  promptLenMultiplier: number;
  seed: number;
  /** Tokens per hash id (source and output). */
  traceBlockSize: number;
}

export interface SynthSummary {
  requests: number;
  sessions: number;
  spanMs: number;
  bytes: number;
}

/** Empirical distribution: a uniformly drawn observation. */
class Empirical {
  private readonly values: Float64Array;
  constructor(values: ArrayLike<number>, what: string) {
    if (values.length === 0) throw new InvalidConfigError('--like', `the source trace has no ${what} to sample`);
    this.values = Float64Array.from(values);
  }
  sample(u: number): number {
    return this.values[Math.min(this.values.length - 1, Math.floor(u * this.values.length))] as number;
  }
}

/** mulberry32, seeded through a splitmix-style scramble. */
function uniformStream(seed: number): () => number {
  let s = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b);
  s ^= s >>> 13;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class GrowList {
  data = new Int32Array(1024);
  length = 0;
  push(v: number): number {
    if (this.length === this.data.length) {
      const next = new Int32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length] = v;
    return this.length++;
  }
}

/** The source's statistics, ready to sample. */
export class TraceModel {
  /** Core nodes (0 = root): visits, leaf count, first emitted synthetic id and block count. */
  private readonly visits: Int32Array;
  private readonly leafs: Int32Array;
  private readonly idBase: Int32Array;
  private readonly idCount: Int32Array;
  /** Core children of node u: childOf[childStart[u] .. childStart[u + 1]), cumulative visits in childCum. */
  private readonly childStart: Int32Array;
  private readonly childOf: Int32Array;
  private readonly childCum: Float64Array;
  /** First id free for leaf blocks. */
  readonly firstLeafId: number;
  private readonly leafBlocks: Empirical;
  private readonly leafStart: Int32Array;
  private readonly leafLen: Int32Array;
  private readonly lastBlockTokens: Empirical;
  private readonly outputLength: Empirical;
  private readonly groupSize: Empirical;
  private readonly groupGapMs: Empirical | null;
  private readonly turns: Empirical;
  private readonly turnDelayMs: Empirical | null;
  private readonly turnAddedBlocks: Empirical | null;
  readonly traceBlockSize: number;

  constructor(reqs: readonly TraceRequest[], opts: { traceBlockSize: number; prefixLenMultiplier: number; promptLenMultiplier: number }) {
    const B = opts.traceBlockSize;
    this.traceBlockSize = B;
    if (reqs.length === 0) throw new InvalidConfigError('--like', 'the source trace has no requests');
    // Units of arrival: first turns (a request without a session is its own first turn).
    const sessions = new Map<string, TraceRequest[]>();
    const firsts: TraceRequest[] = [];
    for (const r of reqs) {
      if (r.sessionId === null) {
        firsts.push(r);
        continue;
      }
      const s = sessions.get(r.sessionId);
      if (s === undefined) {
        sessions.set(r.sessionId, [r]);
        firsts.push(r);
      } else s.push(r);
    }

    // Trie over first turns; node 0 = root.
    const edges = new ChildTable();
    const parent = new GrowList(), visits = new GrowList();
    parent.push(-1);
    visits.push(firsts.length);
    const paths: Int32Array[] = [];
    for (const r of firsts) {
      const ids = r.hashIds;
      const path = new Int32Array(ids.length);
      let node = 0;
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i] as number;
        let c = edges.get(node, id | 0);
        if (c === 0) {
          c = parent.push(node);
          visits.push(0);
          edges.set(node, id | 0, c);
        }
        visits.data[c]!++;
        path[i] = c;
        node = c;
      }
      paths.push(path);
    }
    const numNodes = parent.length;
    const V = visits.data;
    // Core nodes get dense indices; the root is core 0.
    const coreOf = new Int32Array(numNodes).fill(-1);
    let numCore = 0;
    for (let n = 0; n < numNodes; n++) if (n === 0 || (V[n] as number) >= 2) coreOf[n] = numCore++;
    const coreParent = new Int32Array(numCore);
    const coreVisits = new Int32Array(numCore);
    for (let n = 0; n < numNodes; n++) {
      const c = coreOf[n] as number;
      if (c < 0) continue;
      coreVisits[c] = V[n] as number;
      coreParent[c] = n === 0 ? -1 : (coreOf[parent.data[n] as number] as number);
    }
    const leafs = new Int32Array(numCore);
    const leafLens: number[] = [];
    const leafAt: number[] = [];
    const lastTokens: number[] = [];
    for (let k = 0; k < paths.length; k++) {
      const path = paths[k] as Int32Array;
      let depth = 0;
      while (depth < path.length && coreOf[path[depth] as number]! >= 0) depth++;
      const lastCore = depth === 0 ? 0 : (coreOf[path[depth - 1] as number] as number);
      if (depth < path.length) {
        leafs[lastCore]!++;
        leafLens.push(Math.max(1, Math.round((path.length - depth) * opts.promptLenMultiplier)));
        leafAt.push(lastCore);
      }
      const r = firsts[k] as TraceRequest;
      lastTokens.push(Math.min(B, Math.max(1, r.inputLength - (r.hashIds.length - 1) * B)));
    }
    // Children lists (CSR) with cumulative visits for sampling.
    const childCount = new Int32Array(numCore + 1);
    for (let c = 1; c < numCore; c++) childCount[coreParent[c] as number]!++;
    const childStart = new Int32Array(numCore + 1);
    for (let c = 0; c < numCore; c++) childStart[c + 1] = (childStart[c] as number) + (childCount[c] as number);
    const fill = childStart.slice(0, numCore);
    const childOf = new Int32Array(Math.max(1, numCore - 1));
    for (let c = 1; c < numCore; c++) childOf[fill[coreParent[c] as number]!++] = c;
    const childCum = new Float64Array(childOf.length);
    for (let u = 0; u < numCore; u++) {
      let acc = 0;
      for (let j = childStart[u] as number; j < (childStart[u + 1] as number); j++) {
        acc += coreVisits[childOf[j] as number] as number;
        childCum[j] = acc;
      }
    }
    // Synthetic ids: chains (a node whose traffic all continues to its single core child) are
    // stretched by the prefix multiplier as a whole; node j of a chain emits
    // round(j·M) − round((j − 1)·M) blocks, the chain's last node at least what keeps it ≥ 1 block.
    const M = opts.prefixLenMultiplier;
    const idBase = new Int32Array(numCore), idCount = new Int32Array(numCore);
    const chainPos = new Int32Array(numCore);
    const chainEmitted = new Int32Array(numCore);
    let nextId = 0;
    for (let c = 1; c < numCore; c++) {
      // Core nodes are numbered in trie-creation order, so a parent precedes its children.
      const p = coreParent[c] as number;
      const continues = p > 0 && (childStart[p + 1] as number) - (childStart[p] as number) === 1 && (leafs[p] as number) === 0 && coreVisits[c] === coreVisits[p];
      const pos = continues ? (chainPos[p] as number) + 1 : 1;
      const before = continues ? (chainEmitted[p] as number) : 0;
      let emit = Math.round(pos * M) - Math.round((pos - 1) * M);
      const endsChain = !((childStart[c + 1] as number) - (childStart[c] as number) === 1 && (leafs[c] as number) === 0
        && coreVisits[childOf[childStart[c] as number] as number] === coreVisits[c]);
      if (endsChain && before + emit < 1) emit = 1 - before;
      chainPos[c] = pos;
      chainEmitted[c] = before + emit;
      idBase[c] = nextId;
      idCount[c] = emit;
      nextId += emit;
    }
    this.visits = coreVisits;
    this.leafs = leafs;
    this.idBase = idBase;
    this.idCount = idCount;
    this.childStart = childStart;
    this.childOf = childOf;
    this.childCum = childCum;
    this.firstLeafId = nextId;
    this.leafBlocks = new Empirical(leafLens.length > 0 ? leafLens : [1], 'leaf blocks');
    // Leaf lengths per node they hang from (CSR), so a prompt's length follows its context.
    this.leafStart = new Int32Array(numCore + 1);
    for (let c = 0; c < numCore; c++) this.leafStart[c + 1] = (this.leafStart[c] as number) + (leafs[c] as number);
    const at = this.leafStart.slice(0, numCore);
    this.leafLen = new Int32Array(leafLens.length);
    for (let k = 0; k < leafLens.length; k++) this.leafLen[at[leafAt[k] as number]!++] = leafLens[k] as number;
    this.lastBlockTokens = new Empirical(lastTokens, 'input lengths');
    this.outputLength = new Empirical(reqs.map((r) => r.outputLength), 'output lengths');

    // Arrival groups over first turns, in time order.
    const ts = firsts.map((r) => r.timestampMs).sort((a, b) => a - b);
    const sizes: number[] = [];
    const gaps: number[] = [];
    let run = 1;
    for (let i = 1; i <= ts.length; i++) {
      if (i < ts.length && ts[i] === ts[i - 1]) {
        run++;
        continue;
      }
      sizes.push(run);
      run = 1;
      if (i < ts.length) gaps.push((ts[i] as number) - (ts[i - 1] as number));
    }
    this.groupSize = new Empirical(sizes, 'arrivals');
    this.groupGapMs = gaps.length > 0 ? new Empirical(gaps, 'arrival gaps') : null;

    const turnCounts: number[] = [];
    for (const r of firsts) turnCounts.push(r.sessionId === null ? 1 : (sessions.get(r.sessionId) as TraceRequest[]).length);
    this.turns = new Empirical(turnCounts, 'sessions');
    const delays: number[] = [];
    const added: number[] = [];
    for (const turns of sessions.values()) {
      for (let k = 1; k < turns.length; k++) {
        const prev = (turns[k - 1] as TraceRequest).hashIds, cur = (turns[k] as TraceRequest).hashIds;
        let common = 0;
        while (common < prev.length && common < cur.length && prev[common] === cur[common]) common++;
        added.push(Math.max(1, Math.round((cur.length - common) * opts.promptLenMultiplier)));
        delays.push((turns[k] as TraceRequest).delayMs ?? 0);
      }
    }
    this.turnDelayMs = delays.length > 0 ? new Empirical(delays, 'turn delays') : null;
    this.turnAddedBlocks = added.length > 0 ? new Empirical(added, 'turn lengths') : null;
  }

  /**
   * Walk the core tree and append a leaf: writes hash ids to `out` from 0 and returns how many.
   * `nextLeafId` is the first unused leaf id; the caller advances it by the leaf's length
   * (returned in `leaf[0]`).
   */
  samplePath(u: () => number, out: GrowList, nextLeafId: number, leaf: Int32Array): void {
    out.length = 0;
    let node = 0;
    for (;;) {
      const v = this.visits[node] as number;
      const x = u() * v;
      const s = this.childStart[node] as number, e = this.childStart[node + 1] as number;
      const childTotal = e > s ? (this.childCum[e - 1] as number) : 0;
      if (x < childTotal) {
        // Binary search the first cumulative weight above x.
        let lo = s, hi = e - 1;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if ((this.childCum[mid] as number) > x) hi = mid;
          else lo = mid + 1;
        }
        node = this.childOf[lo] as number;
        const base = this.idBase[node] as number;
        for (let k = 0; k < (this.idCount[node] as number); k++) out.push(base + k);
        continue;
      }
      let n = 0;
      const numLeafs = this.leafs[node] as number;
      if (x < childTotal + numLeafs || out.length === 0) {
        const ls = this.leafStart[node] as number;
        n = numLeafs > 0 ? (this.leafLen[ls + Math.min(numLeafs - 1, Math.floor(u() * numLeafs))] as number) : this.leafBlocks.sample(u());
        for (let k = 0; k < n; k++) out.push(nextLeafId + k);
      }
      leaf[0] = n;
      return;
    }
  }

  inputLength(numBlocks: number, u: () => number): number {
    return (numBlocks - 1) * this.traceBlockSize + this.lastBlockTokens.sample(u());
  }

  outputLen(u: () => number): number {
    return this.outputLength.sample(u());
  }

  groupSizeOf(u: () => number): number {
    return this.groupSize.sample(u());
  }

  /** Gap to the next arrival group (source ms); null when the source has a single timestamp. */
  groupGap(u: () => number): number | null {
    return this.groupGapMs === null ? null : this.groupGapMs.sample(u());
  }

  turnsOf(u: () => number): number {
    return this.turns.sample(u());
  }

  turnDelay(u: () => number): number {
    return this.turnDelayMs === null ? 0 : this.turnDelayMs.sample(u());
  }

  turnAdded(u: () => number): number {
    return this.turnAddedBlocks === null ? 1 : this.turnAddedBlocks.sample(u());
  }
}

function checkOptions(o: SynthOptions): void {
  const pos = (flag: string, v: number): void => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new InvalidConfigError(flag, `must be a number > 0, got ${String(v)}`);
  };
  pos('--duration', o.durationMs);
  pos('--rate-scale', o.rateScale);
  pos('--prefix-len-multiplier', o.prefixLenMultiplier);
  pos('--prompt-len-multiplier', o.promptLenMultiplier);
  if (!Number.isInteger(o.seed)) throw new InvalidConfigError('--seed', `must be an integer, got ${String(o.seed)}`);
  if (!Number.isInteger(o.traceBlockSize) || o.traceBlockSize < 1) {
    throw new InvalidConfigError('--trace-block-size', `must be a positive integer, got ${String(o.traceBlockSize)}`);
  }
}

// The constant pieces of a line, encoded once (TextWriter copies them).
const TIMESTAMP = Buffer.from('{"timestamp": ');
const INPUT_LENGTH = Buffer.from(', "input_length": ');
const OUTPUT_LENGTH = Buffer.from(', "output_length": ');
const HASH_IDS = Buffer.from(', "hash_ids": [');
const ID_SEP = Buffer.from(', ');
const SESSION_ID = Buffer.from(', "session_id": "');
const QUOTE = Buffer.from('"');
const LATER_TURN = Buffer.from('{"session_id": "');
const DELAY = Buffer.from('", "delay": ');
const LIST_END = Buffer.from(']');
const LINE_END = Buffer.from('}\n');

/**
 * Generate the synthetic trace, handing out JSONL bytes in pieces (≈ 1 MiB) to `write`; a piece
 * is not touched again after it is handed out. Deterministic for a given source, options and seed.
 */
export async function synthesizeTrace(source: readonly TraceRequest[], opts: SynthOptions, write: (chunk: Buffer) => Promise<void>): Promise<SynthSummary> {
  checkOptions(opts);
  const model = new TraceModel(source, opts);
  const u = uniformStream(opts.seed);
  const path = new GrowList();
  const leaf = new Int32Array(1);
  let nextLeafId = model.firstLeafId;
  const CHUNK = 1 << 20;
  // Lines are written as bytes (src/util/text-writer.ts): 300 MiB of digits through template
  // strings spent most of their time in string ropes and the garbage collector.
  const out = new TextWriter(CHUNK + (CHUNK >> 2));
  let bytes = 0;
  let requests = 0, sessions = 0;
  let lastTs = 0;
  const flush = async (): Promise<void> => {
    if (out.length === 0) return;
    bytes += out.length;
    await write(out.take(CHUNK + (CHUNK >> 2)));
  };
  /** `, "input_length": …, "output_length": …, "hash_ids": [...]` of the current path (draws input, then output length). */
  const lengthsAndIds = (): void => {
    const n = path.length;
    out.bytes(INPUT_LENGTH);
    out.number(model.inputLength(n, u));
    out.bytes(OUTPUT_LENGTH);
    out.number(model.outputLen(u));
    out.bytes(HASH_IDS);
    const d = path.data;
    for (let k = 0; k < n; k++) {
      if (k > 0) out.bytes(ID_SEP);
      out.number(d[k] as number);
    }
    out.bytes(LIST_END);
  };
  let t = 0;
  while (t < opts.durationMs) {
    const ts = Math.round(t);
    const group = model.groupSizeOf(u);
    for (let g = 0; g < group; g++) {
      model.samplePath(u, path, nextLeafId, leaf);
      nextLeafId += leaf[0] as number;
      const turns = model.turnsOf(u);
      const sid = turns > 1 ? `s${sessions}` : null;
      sessions++;
      // Same field order and evaluation order (input length, then output length) as ever: the
      // random stream and the bytes stay those of earlier versions.
      out.bytes(TIMESTAMP);
      out.number(ts);
      lengthsAndIds();
      if (sid !== null) {
        out.bytes(SESSION_ID);
        out.str(sid);
        out.bytes(QUOTE);
      }
      out.bytes(LINE_END);
      requests++;
      for (let k = 1; k < turns; k++) {
        const add = model.turnAdded(u);
        for (let j = 0; j < add; j++) path.push(nextLeafId + j);
        nextLeafId += add;
        const delay = Math.round(model.turnDelay(u) / opts.rateScale);
        out.bytes(LATER_TURN);
        out.str(sid as string);
        out.bytes(DELAY);
        out.number(delay);
        lengthsAndIds();
        out.bytes(LINE_END);
        requests++;
      }
      if (out.length >= CHUNK) await flush();
    }
    lastTs = ts;
    const gap = model.groupGap(u);
    if (gap === null) break;
    t += gap / opts.rateScale;
  }
  await flush();
  return { requests, sessions, spanMs: lastTs, bytes };
}

/** synthesizeTrace into a file. */
export async function synthesizeTraceToFile(source: readonly TraceRequest[], opts: SynthOptions, outPath: string): Promise<SynthSummary> {
  const out = createWriteStream(outPath);
  const failed = new Promise<never>((_, reject) => out.once('error', reject));
  failed.catch(() => undefined);
  const write = (chunk: Buffer): Promise<void> =>
    Promise.race([
      failed,
      new Promise<void>((resolve) => {
        if (out.write(chunk)) resolve();
        else out.once('drain', resolve);
      }),
    ]);
  const summary = await synthesizeTrace(source, opts, write);
  await Promise.race([failed, new Promise<void>((resolve) => out.end(resolve))]);
  return summary;
}
