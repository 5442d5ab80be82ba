/**
 * Engine-block hashes of trace requests for the replay's engines and router, memoized per trace
 * prefix.
 *
 * When the trace block size is a multiple of the engine block size, every engine block lies inside
 * one trace block and holds that block's hash id repeated (synthesizePromptTokens), so its tokens
 * and everything before them are fixed by the trace-level prefix hash_ids[0..i] and its position
 * j inside the trace block. Its identity is built from exactly that: a group hash per trace prefix,
 *
 *   G(ids[0..i]) = xxh3Chain(G(ids[0..i-1]), T(ids[i]))   (G(ids[0..0]) = T(ids[0])),
 *
 * where T(id) is the XXH3 of one engine block of the repeated id (the block's tokens hash, which
 * Stored events carry), and block j's sequence hash is G with the low 5 bits of its low half
 * replaced by j mod 32 (and its high half mixed with j div 32). Two blocks get the same hash
 * exactly when their token prefixes are equal (up to 64-bit collisions, as for vLLM's hashes).
 * These are not the values computeSequenceHashes gives for the synthesized tokens — nothing in an
 * offline replay publishes them — but the blocks of a trace block come as one group: the engines
 * keep them in one entry of a GroupedBlockHashTable, and a trie node stores one hash instead of
 * one per engine block. Each distinct prefix (a trie node) costs one XXH3 and one chain step.
 *
 * Unaligned block sizes hash the synthesized tokens (computeSequenceHashes).
 */
import { computeBlockHashes, computeSequenceHashes } from '../engine/engine.js';
import { xxh3Chain, xxh3Tokens } from '../engine/kv/xxh3.js';
import type { TraceRequest } from '../trace/mooncake.js';
import { ChildTable } from '../trace/child-table.js';

/**
 * Trie size limit (16 MiB of hashes). A day-long trace has tens of millions of distinct prefixes,
 * nearly all unique prompts seen once: when the trie is full it is dropped and rebuilt from the
 * next requests on, which re-learns the hot shared prefixes at once and keeps memory independent
 * of the trace length. The hashes are the same either way.
 */
const MAX_NODES = 1 << 20;
/** Nodes per storage page: the trie grows by adding pages, never by copying what it holds. */
const PAGE_SHIFT = 12;
const PAGE_NODES = 1 << PAGE_SHIFT;
const PAGE_MASK = PAGE_NODES - 1;
/** Low bits of a block hash's low half that index the block inside its group. */
const GROUP_BITS = 5;
const INDEX_MASK = (1 << GROUP_BITS) - 1;

/** Block j's sequence hash from its group hash (see the file comment). */
function blockHi(gHi: number, j: number): number {
  return (gHi ^ Math.imul(j >>> GROUP_BITS, 0x9e3779b1)) >>> 0;
}
function blockLo(gLo: number, j: number): number {
  return ((gLo & ~INDEX_MASK) | (j & INDEX_MASK)) >>> 0;
}

export class TraceHashMemo {
  private readonly tbs: number;
  private readonly bs: number;
  /** Engine blocks per trace block when aligned, else 0 (no memo). */
  private readonly per: number;
  private child: ChildTable;
  private readonly childCapacity: number;
  private numNodes = 1; // node 0 = root
  /** Per page of PAGE_NODES nodes: the group hash of each node (hi, lo halves). */
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
   * ids): with unaligned block sizes.
   */
  readsPrompt(_promptLen: number): boolean {
    return this.per === 0;
  }

  /** Whether the hashes come in groups of 32 sharing all but their low 5 bits (aligned block sizes). */
  get groupedHashes(): boolean {
    return this.per > 0;
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
    if (outHi.length < nb || outLo.length < nb || (tokHi !== null && tokHi.length < nb) || (tokLo !== null && tokLo.length < nb)) {
      throw new RangeError(`output arrays hold fewer than ${nb} hashes`);
    }
    if (1 + Math.ceil(promptLen / this.tbs) >= this.maxNodes) {
      // Longer than even an empty trie holds: chain the group hashes directly.
      groupHashes(req.hashIds, nb, this.per, this.bs, outHi, outLo, tokHi, tokLo);
      return nb;
    }
    if (this.numNodes + Math.ceil(promptLen / this.tbs) >= this.maxNodes) {
      // Pages are kept: the rebuilt trie overwrites them.
      this.child = new ChildTable(this.childCapacity);
      this.numNodes = 1;
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
      const take = Math.min(per, nb - filled);
      const gHi = (this.hiPages[page] as Uint32Array)[at] as number, gLo = (this.loPages[page] as Uint32Array)[at] as number;
      for (let j = 0; j < take; j++) {
        outHi[filled + j] = blockHi(gHi, j);
        outLo[filled + j] = blockLo(gLo, j);
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

  /** New trie node for `id` after `parent`: its tokens hash and its group hash, chained from the parent's. */
  private addNode(parent: number, id: number): number {
    const node = this.numNodes++;
    const page = node >>> PAGE_SHIFT, at = node & PAGE_MASK;
    if (page === this.hiPages.length) this.addPage();
    const out = this.out;
    this.idTokens.fill(id);
    xxh3Tokens(this.idTokens, 0, this.bs, out);
    const tokHi = out[0] as number, tokLo = out[1] as number;
    (this.tokHiPages[page] as Uint32Array)[at] = tokHi;
    (this.tokLoPages[page] as Uint32Array)[at] = tokLo;
    let gHi = tokHi, gLo = tokLo;
    if (parent !== 0) {
      const pPage = parent >>> PAGE_SHIFT, pAt = parent & PAGE_MASK;
      xxh3Chain((this.hiPages[pPage] as Uint32Array)[pAt] as number, (this.loPages[pPage] as Uint32Array)[pAt] as number, tokHi, tokLo, out);
      gHi = out[0] as number;
      gLo = out[1] as number;
    }
    (this.hiPages[page] as Uint32Array)[at] = gHi;
    (this.loPages[page] as Uint32Array)[at] = gLo;
    return node;
  }

  private addPage(): void {
    this.hiPages.push(new Uint32Array(PAGE_NODES));
    this.loPages.push(new Uint32Array(PAGE_NODES));
    this.tokHiPages.push(new Uint32Array(PAGE_NODES));
    this.tokLoPages.push(new Uint32Array(PAGE_NODES));
  }
}

/**
 * The group-hash identities of the first `nb` engine blocks of a prompt with these trace hash ids
 * (per = engine blocks per trace block), computed without a trie: the memo's path for prompts
 * longer than its trie, and the reference it is tested against. Tokens hashes go to tokHi/tokLo
 * when given.
 */
export function groupHashes(
  hashIds: ArrayLike<number>, nb: number, per: number, blockSize: number,
  outHi: Uint32Array, outLo: Uint32Array, tokHi: Uint32Array | null = null, tokLo: Uint32Array | null = null,
): void {
  const tokens = new Uint32Array(blockSize);
  const out = new Uint32Array(2);
  let gHi = 0, gLo = 0;
  for (let t = 0, filled = 0; filled < nb; t++) {
    tokens.fill((hashIds[t] as number) >>> 0);
    xxh3Tokens(tokens, 0, blockSize, out);
    const th = out[0] as number, tl = out[1] as number;
    if (t === 0) {
      gHi = th;
      gLo = tl;
    } else {
      xxh3Chain(gHi, gLo, th, tl, out);
      gHi = out[0] as number;
      gLo = out[1] as number;
    }
    const take = Math.min(per, nb - filled);
    for (let j = 0; j < take; j++) {
      outHi[filled + j] = blockHi(gHi, j);
      outLo[filled + j] = blockLo(gLo, j);
      if (tokHi !== null && tokLo !== null) {
        tokHi[filled + j] = th;
        tokLo[filled + j] = tl;
      }
    }
    filled += take;
  }
}
