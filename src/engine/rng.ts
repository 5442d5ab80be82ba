/**
 * Seeded 32-bit PRNG (mulberry32). One int32 state word, no allocation per draw, so the engine
 * can draw a token id per emitted token inside step(). Quality is ample for synthetic token ids.
 */
export class Rng {
  /**
   * The int32 state word. Public so a hot loop can keep it in a local and inline the step
   * (state += 0x6d2b79f5, then the output mix of nextI32) and store it back afterwards.
   */
  state: number;

  constructor(seed: number) {
    // Mix the seed so that nearby seeds (seed + rank) give unrelated streams. Kept int32 so the
    // field stays a small integer in V8.
    this.state = Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b) ^ 0x6d2b79f5;
  }

  /** Output mix of mulberry32 for an already advanced state word (see nextI32). */
  static mix(s: number): number {
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return t ^ (t >>> 14);
  }

  /** Next value as a signed int32 (all 32 bits uniform). */
  nextI32(): number {
    const s = (this.state + 0x6d2b79f5) | 0;
    this.state = s;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return t ^ (t >>> 14);
  }

  /** Next value, uniform in [0, 2^32). */
  nextU32(): number {
    return this.nextI32() >>> 0;
  }

  /**
   * Uniform integer in [lo, lo + span) for span ≤ 2048, in integer arithmetic: the top 20 bits
   * scaled by span (bias < span / 2^20).
   */
  nextSmall(lo: number, span: number): number {
    return lo + (((this.nextI32() >>> 12) * span) >>> 20);
  }

  /** Uniform integer in [lo, lo + span) for any span up to 2^32. */
  nextInt(lo: number, span: number): number {
    return lo + Math.floor(this.nextU32() * (span / 4294967296));
  }
}
