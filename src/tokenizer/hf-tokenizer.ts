/**
 * Hugging Face `tokenizer.json` through @huggingface/tokenizers (pure JS, no native code, works
 * offline). Prompts are encoded with the tokenizer's special tokens (vLLM's /v1/completions
 * default). Generated ids outside the vocabulary wrap: id mod vocabSize. Decoded token strings
 * are cached per id so the streaming path does not re-run the decoder.
 */
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { InvalidConfigError } from '../util/errors.js';
import type { Tokenizer } from './tokenizer.js';

export class HfTokenizer implements Tokenizer {
  readonly name: string;
  readonly vocabSize: number;
  private readonly inner: HfLibTokenizer;
  private readonly decoded: (string | undefined)[];

  private constructor(inner: HfLibTokenizer, name: string) {
    this.inner = inner;
    this.name = name;
    this.vocabSize = inner.get_vocab(true).size;
    if (this.vocabSize === 0) throw new InvalidConfigError('--tokenizer', `${name} has an empty vocabulary`);
    this.decoded = new Array<string | undefined>(this.vocabSize);
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

  decodeToken(id: number): string {
    const idx = (id >>> 0) % this.vocabSize;
    const cached = this.decoded[idx];
    if (cached !== undefined) return cached;
    const text = this.inner.decode([idx], { skip_special_tokens: false });
    this.decoded[idx] = text;
    return text;
  }
}
