/**
 * Where each choice ends, decided before it is submitted. Generated token k of a choice is
 * generatedTokenId(vocabulary, seed, k) — the id the engine will emit — so the frontend can find
 * the first stop token, EOS draw or stop string and give the engine exactly that many tokens to
 * generate: the request really ends there (blocks freed, metrics counted), as in vLLM, where the
 * output processor aborts the request on a stop. Work is done only for the features a request uses.
 */
import { GEN_SALT_EOS, generatedTokenId, generatedUniform } from '../engine/generated-tokens.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { SamplingParams } from './parse.js';

export interface ChoicePlan {
  readonly seed: number;
  /** Tokens the engine generates. */
  readonly numTokens: number;
  readonly finishReason: 'length' | 'stop';
  /** vLLM's stop_reason: the matched stop string, the stop token id, or null (EOS / length). */
  readonly stopReason: string | number | null;
  /** Characters of generated text to keep (a stop string cuts the text), or -1: all of it. */
  readonly textLength: number;
}

/** Text of generated token k (DecodeStream: the first token has no predecessor). */
export function tokenPiece(tokenizer: Tokenizer, id: number, k: number): string {
  return k === 0 ? tokenizer.decodeFirstToken(id) : tokenizer.decodeToken(id);
}

export function planChoice(
  vocabulary: Uint32Array, tokenizer: Tokenizer, p: SamplingParams, seed: number, maxTokens: number, eosProbability: number,
): ChoicePlan {
  const eos = p.ignoreEos ? 0 : eosProbability;
  const stopIds = p.stopTokenIds.length > 0 ? new Set(p.stopTokenIds) : null;
  const stops = p.stop;
  if (eos === 0 && stopIds === null && stops.length === 0) {
    return { seed, numTokens: maxTokens, finishReason: 'length', stopReason: null, textLength: -1 };
  }
  let maxStopLen = 0;
  for (const s of stops) if (s.length > maxStopLen) maxStopLen = s.length;
  let text = '';
  for (let k = 0; k < maxTokens; k++) {
    const count = k + 1;
    const armed = count >= p.minTokens;
    const id = generatedTokenId(vocabulary, seed, k);
    if (stops.length > 0) {
      const from = Math.max(0, text.length - maxStopLen + 1);
      text += tokenPiece(tokenizer, id, k);
      if (armed) {
        // The earliest match in the text wins (vLLM's StopChecker scans the new text the same way).
        let at = -1;
        let which = '';
        for (const s of stops) {
          const i = text.indexOf(s, from);
          if (i !== -1 && (at === -1 || i < at)) {
            at = i;
            which = s;
          }
        }
        if (at !== -1) {
          return { seed, numTokens: count, finishReason: 'stop', stopReason: which, textLength: p.includeStopStrInOutput ? at + which.length : at };
        }
      }
    }
    if (!armed) continue;
    if (stopIds !== null && stopIds.has(id)) return { seed, numTokens: count, finishReason: 'stop', stopReason: id, textLength: -1 };
    if (eos > 0 && generatedUniform(seed, k, GEN_SALT_EOS) < eos) return { seed, numTokens: count, finishReason: 'stop', stopReason: null, textLength: -1 };
  }
  return { seed, numTokens: maxTokens, finishReason: 'length', stopReason: null, textLength: -1 };
}
