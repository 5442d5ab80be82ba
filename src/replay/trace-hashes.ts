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

export class TraceHashMemo {
  private readonly tbs: number;
  private readonly bs: number;
  /** Engine blocks per trace block when aligned, else 0 (no memo). */
  private readonly per: number;
  private child = new ChildTable();
  private numNodes = 1; // node 0 = root
  private hi = new Uint32Array(0);
  private lo = new Uint32Array(0);
  /** Tokens hash (the repeated id's block hash) per node: the same for all its engine blocks. */
  private tokHi = new Uint32Array(0);
  private tokLo = new Uint32Array(0);
  private readonly idTokens: Uint32Array;
  private readonly out = new Uint32Array(2);

  private readonly maxNodes: number;

  /** `maxNodes` (tests) overrides the trie size limit. */
  constructor(traceBlockSize: number, blockSize: number, maxNodes = MAX_NODES) {
    this.maxNodes = maxNodes;
    this.tbs = traceBlockSize;
    this.bs = blockSize;
    this.per = traceBlockSize % blockSize === 0 ? traceBlockSize / blockSize : 0;
    this.idTokens = new Uint32Array(this.per > 0 ? blockSize : 0);
    this.grow(1024);
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
    const trieBlocks = Math.ceil(promptLen / this.tbs);
    if (this.per > 0 && trieBlocks < this.maxNodes && this.numNodes + trieBlocks >= this.maxNodes) {
      this.child = new ChildTable();
      this.numNodes = 1;
    }
    if (this.per === 0 || this.numNodes + trieBlocks >= this.maxNodes) {
      if (tokHi !== null && tokLo !== null) return computeBlockHashes(prompt, promptLen, this.bs, outHi, outLo, tokHi, tokLo);
      return computeSequenceHashes(prompt, promptLen, this.bs, outHi, outLo);
    }
    if (outHi.length < nb || outLo.length < nb || (tokHi !== null && tokHi.length < nb) || (tokLo !== null && tokLo.length < nb)) {
      throw new RangeError(`output arrays hold fewer than ${nb} hashes`);
    }
    const per = this.per;
    let node = 0;
    let filled = 0;
    for (let t = 0; filled < nb; t++) {
      const id = (req.hashIds[t] as number) | 0;
      let next = this.child.get(node, id);
      if (next === 0) {
        next = this.addNode(node, id);
        this.child.set(node, id, next);
      }
      const base = next * per;
      const take = Math.min(per, nb - filled);
      const hi = this.hi, lo = this.lo;
      for (let j = 0; j < take; j++) {
        outHi[filled + j] = hi[base + j] as number;
        outLo[filled + j] = lo[base + j] as number;
      }
      if (tokHi !== null && tokLo !== null) {
        // Every engine block of a trace block holds the same repeated id: one tokens hash.
        const th = this.tokHi[next] as number, tl = this.tokLo[next] as number;
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
    if ((node + 1) * per > this.hi.length) this.grow(this.hi.length * 2);
    const out = this.out;
    this.idTokens.fill(id);
    xxh3Tokens(this.idTokens, 0, this.bs, out);
    const tokHi = out[0] as number, tokLo = out[1] as number;
    this.tokHi[node] = tokHi;
    this.tokLo[node] = tokLo;
    let prevHi = 0, prevLo = 0;
    let hasPrev = parent !== 0;
    if (hasPrev) {
      prevHi = this.hi[parent * per + per - 1] as number;
      prevLo = this.lo[parent * per + per - 1] as number;
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
      this.hi[node * per + j] = prevHi;
      this.lo[node * per + j] = prevLo;
    }
    return node;
  }

  private grow(cap: number): void {
    const hi = new Uint32Array(Math.max(cap, this.per * 1024));
    const lo = new Uint32Array(hi.length);
    hi.set(this.hi);
    lo.set(this.lo);
    this.hi = hi;
    this.lo = lo;
    // One tokens hash per node: hi holds `per` entries per node.
    const nodes = this.per > 0 ? Math.floor(hi.length / this.per) : 0;
    const tHi = new Uint32Array(nodes);
    const tLo = new Uint32Array(nodes);
    tHi.set(this.tokHi);
    tLo.set(this.tokLo);
    this.tokHi = tHi;
    this.tokLo = tLo;
  }
}

/** Reference path (tests): hash the synthesized prompt directly. */
export function traceRequestHashes(req: TraceRequest, traceBlockSize: number, blockSize: number, outHi: Uint32Array, outLo: Uint32Array): number {
  const prompt = synthesizePromptTokens(req, traceBlockSize);
  return computeSequenceHashes(prompt, prompt.length, blockSize, outHi, outLo);
}
