/**
 * Engine-block hashes of trace requests for the replay's engines and router.
 *
 * When the trace block size is a multiple of the engine block size, every engine block lies inside
 * one trace block and holds that block's hash id repeated (synthesizePromptTokens), so its tokens
 * and everything before them are fixed by the trace-level prefix hash_ids[0..i] and its position
 * j inside the trace block. Its identity is built from exactly that: a group hash per trace prefix,
 *
 *   G(ids[0..i]) = xxh3Chain(G(ids[0..i-1]), (0, ids[i]))   (G of the empty prefix = ROOT),
 *
 * and block j's sequence hash is G with the low b bits of its low half replaced by j mod 2^b (and
 * its high half mixed with j div 2^b), where b = ⌈log2(engine blocks per trace block)⌉, at most 5
 * (`groupBits`). Two blocks get the same hash exactly when their token prefixes are equal (up to
 * 64-bit collisions, as for vLLM's hashes). These are not the values computeSequenceHashes gives
 * for the synthesized tokens — nothing in an offline replay publishes them — but they cost one
 * chain step per trace block (no token hashing, no memo), and the blocks of a trace block come as
 * one group: the engines keep them in one entry of a GroupedBlockHashTable no wider than a trace
 * block needs (8 ids with the default 64-token engine block and 512-token trace block). Tokens
 * hashes (what Stored events carry) are the real XXH3 of each block.
 *
 * Unaligned block sizes hash the synthesized tokens (computeSequenceHashes).
 */
import { computeBlockHashes, computeSequenceHashes } from '../engine/engine.js';
import { xxh3Chain, xxh3Tokens } from '../engine/kv/xxh3.js';
import { MAX_GROUP_BITS } from '../engine/kv/grouped-hash-table.js';
import type { TraceRequest } from '../trace/mooncake.js';

/** The group hash of the empty prefix (the halves of 2^64 / φ). */
const ROOT_HI = 0x9e3779b9;
const ROOT_LO = 0x7f4a7c15;

export class TraceHashes {
  private readonly bs: number;
  /** Engine blocks per trace block when aligned, else 0 (hash the tokens). */
  private readonly per: number;
  /**
   * Low bits of a hash's low half that hold the block's index in its trace block (0: the hashes
   * do not come in groups — unaligned sizes, or one engine block per trace block).
   */
  readonly groupBits: number;

  constructor(traceBlockSize: number, blockSize: number) {
    this.bs = blockSize;
    this.per = traceBlockSize % blockSize === 0 ? traceBlockSize / blockSize : 0;
    this.groupBits = groupBitsFor(this.per);
  }

  /**
   * Whether hashes() / blockHashes() read the prompt's tokens (else only its hash ids): with
   * unaligned block sizes.
   */
  get readsPrompt(): boolean {
    return this.per === 0;
  }

  /**
   * Sequence hashes of the full engine blocks of the request's synthesized prompt (promptLen
   * tokens) into outHi/outLo; returns the block count. `prompt` must be the synthesized prompt
   * (read when the block sizes do not align).
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
    if (this.per === 0) {
      if (tokHi !== null && tokLo !== null) return computeBlockHashes(prompt, promptLen, this.bs, outHi, outLo, tokHi, tokLo);
      return computeSequenceHashes(prompt, promptLen, this.bs, outHi, outLo);
    }
    if (outHi.length < nb || outLo.length < nb || (tokHi !== null && tokHi.length < nb) || (tokLo !== null && tokLo.length < nb)) {
      throw new RangeError(`output arrays hold fewer than ${nb} hashes`);
    }
    groupHashes(req.hashIds, nb, this.per, this.groupBits, this.bs, outHi, outLo, tokHi, tokLo);
    return nb;
  }
}

/** ⌈log2(per)⌉ capped at MAX_GROUP_BITS: enough low bits for the index of every engine block of a trace block. */
export function groupBitsFor(per: number): number {
  let bits = 0;
  while (bits < MAX_GROUP_BITS && 1 << bits < per) bits++;
  return bits;
}

let scratchTokens = new Uint32Array(0);
const scratchOut = new Uint32Array(2);

/**
 * The group-hash identities of the first `nb` engine blocks of a prompt with these trace hash ids
 * (per = engine blocks per trace block, blockSize tokens each; groupBits = groupBitsFor(per)).
 * Tokens hashes go to tokHi/tokLo when given.
 */
export function groupHashes(
  hashIds: ArrayLike<number>, nb: number, per: number, groupBits: number, blockSize: number,
  outHi: Uint32Array, outLo: Uint32Array, tokHi: Uint32Array | null = null, tokLo: Uint32Array | null = null,
): void {
  const out = scratchOut;
  const indexMask = (1 << groupBits) - 1;
  let gHi = ROOT_HI, gLo = ROOT_LO;
  for (let t = 0, filled = 0; filled < nb; t++) {
    const id = (hashIds[t] as number) >>> 0;
    xxh3Chain(gHi, gLo, 0, id, out);
    gHi = out[0] as number;
    gLo = out[1] as number;
    const take = per < nb - filled ? per : nb - filled;
    for (let j = 0; j < take; j++) {
      outHi[filled + j] = (gHi ^ Math.imul(j >>> groupBits, 0x9e3779b1)) >>> 0;
      outLo[filled + j] = ((gLo & ~indexMask) | (j & indexMask)) >>> 0;
    }
    if (tokHi !== null && tokLo !== null) {
      // Every engine block of a trace block holds the same repeated id: one tokens hash.
      if (scratchTokens.length !== blockSize) scratchTokens = new Uint32Array(blockSize);
      scratchTokens.fill(id);
      xxh3Tokens(scratchTokens, 0, blockSize, out);
      const th = out[0] as number, tl = out[1] as number;
      for (let j = 0; j < take; j++) {
        tokHi[filled + j] = th;
        tokLo[filled + j] = tl;
      }
    }
    filled += take;
  }
}
