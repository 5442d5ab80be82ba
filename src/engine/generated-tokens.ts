/**
 * Seeded generated tokens: the k-th generated token of a request with seed s is a pure function
 * of (s, k) and the generation vocabulary, so the same seed gives the same token ids on every rank
 * whatever else shares the pass (vLLM's per-request `seed`), and the HTTP frontend can compute a
 * request's output ahead of the engine (to place stop strings, stop tokens and EOS) with the very
 * ids the engine will emit. Pure: no allocation per call.
 */

/** Salts of the independent per-position streams. */
export const GEN_SALT_TOKEN = 0;
export const GEN_SALT_EOS = 1;
export const GEN_SALT_LOGPROB = 2;

/** The hash as an int32 (stays a small integer in V8: no heap number, no float modulo). */
function mix(seed: number, index: number, salt: number): number {
  let h = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul((index | 0) + 0x632be5ab, 0xc2b2ae35) ^ Math.imul(salt + 1, 0x27d4eb2f);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** A 32-bit hash of (seed, index, salt) (murmur3 finalizer over a splitmix-style combination), in [0, 2^32). */
export function generatedHash(seed: number, index: number, salt: number): number {
  return mix(seed, index, salt) >>> 0;
}

/**
 * Position in a vocabulary of `size` entries of the index-th generated token: the hash's top bits
 * scaled to size (integer multiply-shift up to 65,536 entries).
 */
export function generatedTokenIndex(size: number, seed: number, index: number): number {
  const h = mix(seed, index, GEN_SALT_TOKEN);
  return size <= 65536 ? Math.imul(h >>> 16, size) >>> 16 : Math.floor(((h >>> 0) / 4294967296) * size);
}

/** The index-th generated token id (index 0 = first output token) of a request seeded with `seed`. */
export function generatedTokenId(vocabulary: Uint32Array, seed: number, index: number): number {
  return vocabulary[generatedTokenIndex(vocabulary.length, seed, index)] as number;
}

/** Uniform in [0, 1) for (seed, index, salt). */
export function generatedUniform(seed: number, index: number, salt: number): number {
  return generatedHash(seed, index, salt) / 4294967296;
}

/** Today's unseeded id range ([1000, 2000)) as a vocabulary, for engines given none. */
export function defaultGeneratedVocabulary(min: number, span: number): Uint32Array {
  const v = new Uint32Array(span);
  for (let i = 0; i < span; i++) v[i] = min + i;
  return v;
}
