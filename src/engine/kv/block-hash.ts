import { xxh3Chain, xxh3Tokens } from './xxh3.js';

/**
 * Chained block hashes (Dynamo `lib/tokens`, engine-spec §5.1): block_hash = XXH3-64(seed 1337)
 * over the block's tokens as u32 LE; sequence_hash of block 0 = its block_hash, of block i > 0 =
 * XXH3-64(seed 1337) over [parent sequence_hash u64 LE, block_hash u64 LE]. Only full blocks are
 * hashed. u64 values are (hi, lo) u32 halves.
 */

const scratch = new Uint32Array(2);

/**
 * Hash full blocks [fromBlock, toBlock) of `tokens`, writing block hashes to tokHi/tokLo and
 * sequence hashes to seqHi/seqLo at the block index. Block fromBlock - 1 must already be hashed
 * in seqHi/seqLo when fromBlock > 0. `tokens[0]` is token `tokensFrom` of the sequence (a
 * multiple of blockSize, at most fromBlock × blockSize).
 */
export function hashBlocks(
  tokens: Uint32Array,
  blockSize: number,
  fromBlock: number,
  toBlock: number,
  seqHi: Uint32Array,
  seqLo: Uint32Array,
  tokHi: Uint32Array,
  tokLo: Uint32Array,
  tokensFrom = 0,
): void {
  const out = scratch;
  for (let b = fromBlock; b < toBlock; b++) {
    xxh3Tokens(tokens, b * blockSize - tokensFrom, blockSize, out);
    storeBlockHash(b, out, seqHi, seqLo, tokHi, tokLo);
  }
}

/**
 * Block b's block hash is in `out`: store it, and its sequence hash (itself for block 0, else
 * chained to block b - 1's), at index b. Leaves the sequence hash in `out`.
 */
function storeBlockHash(b: number, out: Uint32Array, seqHi: Uint32Array, seqLo: Uint32Array, tokHi: Uint32Array, tokLo: Uint32Array): void {
  const hi = out[0] as number;
  const lo = out[1] as number;
  tokHi[b] = hi;
  tokLo[b] = lo;
  if (b === 0) {
    seqHi[0] = hi;
    seqLo[0] = lo;
  } else {
    xxh3Chain(seqHi[b - 1] as number, seqLo[b - 1] as number, hi, lo, out);
    seqHi[b] = out[0] as number;
    seqLo[b] = out[1] as number;
  }
}

/** 'gene', 'rate': keeps identity block hashes apart from hashes of 16 bytes of tokens. */
const IDENTITY_TAG_HI = 0x67656e65;
const IDENTITY_TAG_LO = 0x72617465;

/**
 * The identity hashes of block b of a request whose generated tokens are not kept
 * (EngineOptions.keepGeneratedTokens false): block hash = XXH3-64 over [nonce, b, tag] instead of
 * over its tokens, sequence hash chained to block b - 1's as hashBlocks does. Writes index b.
 */
export function identityBlockHash(nonce: number, b: number, seqHi: Uint32Array, seqLo: Uint32Array, tokHi: Uint32Array, tokLo: Uint32Array): void {
  xxh3Chain(nonce >>> 0, b >>> 0, IDENTITY_TAG_HI, IDENTITY_TAG_LO, scratch);
  storeBlockHash(b, scratch, seqHi, seqLo, tokHi, tokLo);
}

/**
 * Sequence hashes of the full blocks among the first numTokens tokens (the same hashes the
 * engine stores and publishes; the router uses them to score prefixes). Writes outHi/outLo[0..n)
 * and returns n = floor(numTokens / blockSize). Throws RangeError if the outputs are too short.
 */
export function computeSequenceHashes(
  tokens: Uint32Array,
  numTokens: number,
  blockSize: number,
  outHi: Uint32Array,
  outLo: Uint32Array,
): number {
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`);
  if (numTokens > tokens.length) throw new RangeError(`numTokens ${numTokens} exceeds tokens.length ${tokens.length}`);
  const n = Math.floor(numTokens / blockSize);
  if (outHi.length < n || outLo.length < n) throw new RangeError(`output arrays hold fewer than ${n} hashes`);
  const out = scratch;
  for (let b = 0; b < n; b++) {
    xxh3Tokens(tokens, b * blockSize, blockSize, out);
    if (b === 0) {
      outHi[0] = out[0] as number;
      outLo[0] = out[1] as number;
    } else {
      xxh3Chain(outHi[b - 1] as number, outLo[b - 1] as number, out[0] as number, out[1] as number, out);
      outHi[b] = out[0] as number;
      outLo[b] = out[1] as number;
    }
  }
  return n;
}

/**
 * Sequence hashes and tokens hashes of the full blocks among the first numTokens tokens (what
 * Engine.addRequestWithHashes takes). Writes seqHi/seqLo/tokHi/tokLo[0..n) and returns
 * n = floor(numTokens / blockSize). Throws RangeError if the outputs are too short.
 */
export function computeBlockHashes(
  tokens: Uint32Array,
  numTokens: number,
  blockSize: number,
  seqHi: Uint32Array,
  seqLo: Uint32Array,
  tokHi: Uint32Array,
  tokLo: Uint32Array,
): number {
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`);
  if (numTokens > tokens.length) throw new RangeError(`numTokens ${numTokens} exceeds tokens.length ${tokens.length}`);
  const n = Math.floor(numTokens / blockSize);
  if (seqHi.length < n || seqLo.length < n || tokHi.length < n || tokLo.length < n) {
    throw new RangeError(`output arrays hold fewer than ${n} hashes`);
  }
  hashBlocks(tokens, blockSize, 0, n, seqHi, seqLo, tokHi, tokLo);
  return n;
}
