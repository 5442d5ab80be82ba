/**
 * Engine-block sequence hashes of trace requests for the router, memoized per trace prefix.
 *
 * When the trace block size is a multiple of the engine block size, every engine block lies inside
 * one trace block and holds that block's hash id repeated, so its sequence hash depends only on
 * the trace-level prefix hash_ids[0..i] and its position inside the trace block. Each distinct
 * prefix (a trie node) is hashed once — one XXH3 over the repeated id plus one chain step per
 * engine block — and later requests sharing the prefix copy the stored hashes. The values are
 * exactly what computeSequenceHashes gives for the synthesized prompt.
 */
import { computeBlockHashes, computeSequenceHashes } from '../engine/engine.js';
import { xxh3Chain, xxh3Tokens } from '../engine/kv/xxh3.js';
import type { TraceRequest } from '../trace/mooncake.js';
import { synthesizePromptTokens } from '../trace/mooncake.js';
import { ChildTable } from '../trace/child-table.js';

/**
 * Trie size limit (≈ 100 MiB with 8 engine blocks per trace block). A day-long trace has tens of
 * millions of distinct prefixes, nearly all unique prompts seen once: when the trie is full it is
 * dropped and rebuilt from the next requests on, which re-learns the hot shared prefixes at once
 * and keeps memory independent of the trace length. The hashes are the same either way.
 */
const MAX_NODES = 1 << 20;
/** Nodes per storage page: the trie grows by adding pages, never by copying what it holds. */
const PAGE_SHIFT = 12;
const PAGE_NODES = 1 << PAGE_SHIFT;
const PAGE_MASK = PAGE_NODES - 1;

export class TraceHashMemo {
  private readonly tbs: number;
  private readonly bs: number;
  /** Engine blocks per trace block when aligned, else 0 (no memo). */
  private readonly per: number;
  private child: ChildTable;
  private readonly childCapacity: number;
  private numNodes = 1; // node 0 = root
  /** Per page of PAGE_NODES nodes: `per` chained sequence hashes per node (hi, lo halves). */
  private readonly hiPages: Uint32Array[] = [];
  private readonly loPages: Uint32Array[] = [];
  /** Per page: the tokens hash (the repeated id's block hash) per node, the same for all its engine blocks. */
  private readonly tokHiPages: Uint32Array[] = [];
  private readonly tokLoPages: Uint32Array[] = [];
  private readonly idTokens: Uint32Array;
  private readonly out = new Uint32Array(2);
  /** Prefix keys of the trace blocks of the request being filled. */
  private keys = new Int32Array(64);
  /** Keeps the read-ahead in fill() observable. */
  warmSink = 0;

  private readonly maxNodes: number;

  /**
   * `maxNodes` (tests) overrides the trie size limit; `expectedNodes` (at most the trace's total
   * trace blocks) sizes the edge table so it does not rehash on the way up.
   */
  constructor(traceBlockSize: number, blockSize: number, maxNodes = MAX_NODES, expectedNodes = 0) {
    this.maxNodes = maxNodes;
    this.tbs = traceBlockSize;
    this.bs = blockSize;
    this.per = traceBlockSize % blockSize === 0 ? traceBlockSize / blockSize : 0;
    this.idTokens = new Uint32Array(this.per > 0 ? blockSize : 0);
    this.childCapacity = this.per > 0 ? Math.min(expectedNodes, maxNodes) : 0;
    this.child = new ChildTable(this.childCapacity);
  }

  /**
   * Whether hashes() / blockHashes() of a prompt this long read its tokens (else only its hash
   * ids): with unaligned block sizes, or when its trace blocks would not fit even an empty trie.
   */
  readsPrompt(promptLen: number): boolean {
    return this.per === 0 || 1 + Math.ceil(promptLen / this.tbs) >= this.maxNodes;
  }

  /**
   * Sequence hashes of the full engine blocks of the request's synthesized prompt (promptLen
   * tokens) into outHi/outLo; returns the block count. `prompt` must be the synthesized prompt
   * (used when the block sizes do not align).
   */
  hashes(req: TraceRequest, prompt: Uint32Array, outHi: Uint32Array, outLo: Uint32Array): number {
    return this.fill(req, prompt, outHi, outLo, null, null);
  }

  /**
   * hashes() plus the tokens hash of every block into tokHi/tokLo: the PromptBlockHashes that
   * Engine.addRequestWithHashes takes.
   */
  blockHashes(req: TraceRequest, prompt: Uint32Array, seqHi: Uint32Array, seqLo: Uint32Array, tokHi: Uint32Array, tokLo: Uint32Array): number {
    return this.fill(req, prompt, seqHi, seqLo, tokHi, tokLo);
  }

  private fill(req: TraceRequest, prompt: Uint32Array, outHi: Uint32Array, outLo: Uint32Array, tokHi: Uint32Array | null, tokLo: Uint32Array | null): number {
    const promptLen = prompt.length;
    const nb = Math.floor(promptLen / this.bs);
    if (this.readsPrompt(promptLen)) {
      if (tokHi !== null && tokLo !== null) return computeBlockHashes(prompt, promptLen, this.bs, outHi, outLo, tokHi, tokLo);
      return computeSequenceHashes(prompt, promptLen, this.bs, outHi, outLo);
    }
    if (this.numNodes + Math.ceil(promptLen / this.tbs) >= this.maxNodes) {
      // Pages are kept: the rebuilt trie overwrites them.
      this.child = new ChildTable(this.childCapacity);
      this.numNodes = 1;
    }
    if (outHi.length < nb || outLo.length < nb || (tokHi !== null && tokHi.length < nb) || (tokLo !== null && tokLo.length < nb)) {
      throw new RangeError(`output arrays hold fewer than ${nb} hashes`);
    }
    const per = this.per;
    // Every edge of the path is keyed by its whole prefix, so all its slots are known now: read
    // them together (overlapping misses) before walking the path one level at a time.
    const numTraceBlocks = Math.ceil(nb / per);
    if (this.keys.length < numTraceBlocks) this.keys = new Int32Array(Math.max(numTraceBlocks, 2 * this.keys.length));
    const keys = this.keys, ids = req.hashIds;
    let key = ChildTable.ROOT_KEY;
    for (let t = 0; t < numTraceBlocks; t++) {
      key = ChildTable.prefixKey(key, (ids[t] as number) | 0);
      keys[t] = key;
    }
    const child = this.child;
    this.warmSink ^= child.warm(keys, numTraceBlocks);
    let node = 0;
    let filled = 0;
    for (let t = 0; filled < nb; t++) {
      const id = (ids[t] as number) | 0;
      let next = child.get(node, id, keys[t] as number);
      if (next === 0) {
        next = this.addNode(node, id);
        child.set(node, id, next, keys[t] as number);
      }
      const page = next >>> PAGE_SHIFT, at = next & PAGE_MASK;
      const base = at * per;
      const take = Math.min(per, nb - filled);
      const hi = this.hiPages[page] as Uint32Array, lo = this.loPages[page] as Uint32Array;
      for (let j = 0; j < take; j++) {
        outHi[filled + j] = hi[base + j] as number;
        outLo[filled + j] = lo[base + j] as number;
      }
      if (tokHi !== null && tokLo !== null) {
        // Every engine block of a trace block holds the same repeated id: one tokens hash.
        const th = (this.tokHiPages[page] as Uint32Array)[at] as number, tl = (this.tokLoPages[page] as Uint32Array)[at] as number;
        for (let j = 0; j < take; j++) {
          tokHi[filled + j] = th;
          tokLo[filled + j] = tl;
        }
      }
      filled += take;
      node = next;
    }
    return nb;
  }

  /** New trie node for `id` after `parent`: hash its engine blocks, chained from the parent's last. */
  private addNode(parent: number, id: number): number {
    const node = this.numNodes++;
    const per = this.per;
    const page = node >>> PAGE_SHIFT, at = node & PAGE_MASK;
    if (page === this.hiPages.length) this.addPage();
    const hiPage = this.hiPages[page] as Uint32Array, loPage = this.loPages[page] as Uint32Array;
    const out = this.out;
    this.idTokens.fill(id);
    xxh3Tokens(this.idTokens, 0, this.bs, out);
    const tokHi = out[0] as number, tokLo = out[1] as number;
    (this.tokHiPages[page] as Uint32Array)[at] = tokHi;
    (this.tokLoPages[page] as Uint32Array)[at] = tokLo;
    let prevHi = 0, prevLo = 0;
    let hasPrev = parent !== 0;
    if (hasPrev) {
      const pAt = (parent & PAGE_MASK) * per + per - 1;
      prevHi = (this.hiPages[parent >>> PAGE_SHIFT] as Uint32Array)[pAt] as number;
      prevLo = (this.loPages[parent >>> PAGE_SHIFT] as Uint32Array)[pAt] as number;
    }
    for (let j = 0; j < per; j++) {
      if (hasPrev) {
        xxh3Chain(prevHi, prevLo, tokHi, tokLo, out);
        prevHi = out[0] as number;
        prevLo = out[1] as number;
      } else {
        prevHi = tokHi;
        prevLo = tokLo;
        hasPrev = true;
      }
      hiPage[at * per + j] = prevHi;
      loPage[at * per + j] = prevLo;
    }
    return node;
  }

  private addPage(): void {
    this.hiPages.push(new Uint32Array(PAGE_NODES * this.per));
    this.loPages.push(new Uint32Array(PAGE_NODES * this.per));
    this.tokHiPages.push(new Uint32Array(PAGE_NODES));
    this.tokLoPages.push(new Uint32Array(PAGE_NODES));
  }
}

/** Reference path (tests): hash the synthesized prompt directly. */
export function traceRequestHashes(req: TraceRequest, traceBlockSize: number, blockSize: number, outHi: Uint32Array, outLo: Uint32Array): number {
  const prompt = synthesizePromptTokens(req, traceBlockSize);
  return computeSequenceHashes(prompt, prompt.length, blockSize, outHi, outLo);
}
