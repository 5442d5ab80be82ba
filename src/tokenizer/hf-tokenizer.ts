/**
 * Hugging Face `tokenizer.json` through @huggingface/tokenizers (pure JS, no native code, works
 * offline). Prompts are encoded with the tokenizer's special tokens (vLLM's /v1/completions
 * default). Generated tokens come from a round-tripping subset of the vocabulary (see
 * generationVocabulary) and are decoded the way Hugging Face's DecodeStream does, so
 * space-inserting decoders (WordPiece, Metaspace) give "w1 w2", not "w1w2". Ids outside the
 * vocabulary wrap (id mod vocabSize). Decoded texts are cached per id.
 */
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { InvalidConfigError } from '../util/errors.js';
import type { Tokenizer } from './tokenizer.js';

/** Vocabulary entries considered for generation: an optional word-start marker, then a lowercase word. */
const CANDIDATE_RE = /^(?:\u0120|\u2581)?[a-z]{2,12}$/;
/** Candidates verified (lowest ids first: the most frequent merges); enough variety, bounded start-up. */
const MAX_GENERATION_VOCABULARY = 4096;
const GENERATED_TEXT_RE = /^ ?[a-z]{2,12}$/;

export class HfTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  private readonly inner: HfLibTokenizer;
  private readonly decoded: (string | undefined)[];
  private readonly decodedFirst: (string | undefined)[];
  private vocabulary: Uint32Array | null;
  /** A round-tripping token whose decoded text precedes each token in the DecodeStream step. */
  private anchor: number;

  private constructor(inner: HfLibTokenizer, name: string) {
    this.inner = inner;
    this.name = name;
    this.vocabSize = inner.get_vocab(true).size;
    if (this.vocabSize === 0) throw new InvalidConfigError('--tokenizer', `${name} has an empty vocabulary`);
    this.decoded = new Array<string | undefined>(this.vocabSize);
    this.decodedFirst = new Array<string | undefined>(this.vocabSize);
    this.vocabulary = null;
    this.anchor = -1;
  }

  static fromJson(json: Record<string, unknown>, config: Record<string, unknown>, name: string): HfTokenizer {
    let inner: HfLibTokenizer;
    try {
      inner = new HfLibTokenizer(json, config);
    } catch (err) {
      throw new InvalidConfigError('--tokenizer', `${name} is not a usable tokenizer.json: ${(err as Error).message}`);
    }
    return new HfTokenizer(inner, name);
  }

  encode(text: string): Uint32Array {
    return Uint32Array.from(this.inner.encode(text).ids);
  }

  decode(ids: Uint32Array): string {
    const wrapped: number[] = new Array<number>(ids.length);
    for (let i = 0; i < ids.length; i++) wrapped[i] = ((ids[i] as number) >>> 0) % this.vocabSize;
    return this.inner.decode(wrapped, { skip_special_tokens: false });
  }

  decodeFirstToken(id: number): string {
    const idx = (id >>> 0) % this.vocabSize;
    const cached = this.decodedFirst[idx];
    if (cached !== undefined) return cached;
    const text = this.inner.decode([idx], { skip_special_tokens: false });
    this.decodedFirst[idx] = text;
    return text;
  }

  /** DecodeStream step after an earlier token: decode([anchor, id]) minus decode([anchor]). */
  decodeToken(id: number): string {
    const idx = (id >>> 0) % this.vocabSize;
    const cached = this.decoded[idx];
    if (cached !== undefined) return cached;
    if (this.anchor < 0) this.generationVocabulary();
    const prefix = this.decodeFirstToken(this.anchor);
    const both = this.inner.decode([this.anchor, idx], { skip_special_tokens: false });
    const text = both.startsWith(prefix) ? both.slice(prefix.length) : this.decodeFirstToken(idx);
    this.decoded[idx] = text;
    return text;
  }

  /**
   * Tokens that re-encode alone, as "first" and as "after another generated token", to exactly
   * themselves, with texts that are one lowercase word (after an optional space): pre-tokenizers
   * split at those spaces, so any stream of them re-encodes to the same ids. Computed once.
   */
  generationVocabulary(): Uint32Array {
    if (this.vocabulary !== null) return this.vocabulary;
    const candidates: number[] = [];
    for (const [token, id] of this.inner.get_vocab(false)) if (CANDIDATE_RE.test(token)) candidates.push(id);
    candidates.sort((a, b) => a - b);
    const single = (text: string, id: number): boolean => {
      const ids = this.inner.encode(text, { add_special_tokens: false }).ids;
      return ids.length === 1 && ids[0] === id;
    };
    const accepted: number[] = [];
    for (const id of candidates) {
      if (accepted.length >= MAX_GENERATION_VOCABULARY) break;
      const first = this.inner.decode([id], { skip_special_tokens: false });
      if (!GENERATED_TEXT_RE.test(first) || !single(first, id)) continue;
      // The first accepted token becomes the anchor; it must also follow itself.
      if (accepted.length === 0) this.anchor = id;
      const anchorText = this.decodeFirstToken(this.anchor);
      const both = this.inner.decode([this.anchor, id], { skip_special_tokens: false });
      const next = both.startsWith(anchorText) ? both.slice(anchorText.length) : '';
      // After another word the token must be separated by a space, or the two would merge.
      if (!next.startsWith(' ') || !GENERATED_TEXT_RE.test(next)) {
        if (accepted.length === 0) this.anchor = -1;
        continue;
      }
      const pair = this.inner.encode(both, { add_special_tokens: false }).ids;
      if (pair.length !== 2 || pair[0] !== this.anchor || pair[1] !== id) {
        if (accepted.length === 0) this.anchor = -1;
        continue;
      }
      accepted.push(id);
    }
    if (accepted.length < 2) {
      throw new InvalidConfigError('--tokenizer', `${this.name} has fewer than 2 vocabulary entries that are plain lowercase words re-encoding to themselves; mockfleet generates text from those`);
    }
    this.vocabulary = Uint32Array.from(accepted);
    return this.vocabulary;
  }
}
