/**
 * Default tokenizer: fast, deterministic, no vocabulary file.
 *
 * Encode rule:
 *   - whitespace (ASCII controls, space, and the Unicode space separators) separates tokens;
 *   - a maximal run of word characters is one token; word characters are ASCII letters, digits,
 *     `_`, and every non-ASCII character that is not whitespace;
 *   - every other ASCII character (punctuation, symbols) is a token on its own;
 *   - id = 1000 + FNV-1a-32(UTF-16 code units of the token) mod 49000, so ids lie in [1000, 50000).
 *   "Hello, world!" -> ["Hello", ",", "world", "!"] -> 4 ids.
 *
 * Generated ids: the generation vocabulary is the ids of the 256 GENERATED_WORDS themselves
 * (id = the word's own encode id), each decoding to " " + word. Every entry is a single word of
 * ASCII letters, so generated text re-encodes to exactly the generated ids (a multi-turn chat that
 * feeds answers back keeps its token accounting and its prefix-cache blocks). Any other id decodes
 * to " " + GENERATED_WORDS[id mod 256] (the word tokenizer cannot invert its hash).
 */
import type { Tokenizer } from './tokenizer.js';
import { GENERATED_WORDS } from './generated-words.js';

export const WORD_TOKEN_ID_MIN = 1000;
export const WORD_TOKEN_ID_SPAN = 49000;

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** 0 = whitespace, 1 = word character, 2 = single-character token; for code units < 128. */
const ASCII_CLASS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  if (c <= 0x20 || c === 0x7f) ASCII_CLASS[c] = 0;
  else if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f) ASCII_CLASS[c] = 1;
  else ASCII_CLASS[c] = 2;
}

function isUnicodeSpace(c: number): boolean {
  return c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 ||
    c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

function classOf(c: number): number {
  if (c < 128) return ASCII_CLASS[c] as number;
  return isUnicodeSpace(c) ? 0 : 1;
}

function finishId(hash: number): number {
  return WORD_TOKEN_ID_MIN + ((hash >>> 0) % WORD_TOKEN_ID_SPAN);
}

export class WordTokenizer implements Tokenizer {
  readonly name = 'word';
  /** Grows to the longest prompt seen; encode() returns a copy of the used prefix. */
  private scratch: Uint32Array;
  private readonly decoded: readonly string[];
  /** Encode id of each generated word -> its decoded text. */
  private readonly wordById: Map<number, string>;
  private readonly vocabulary: Uint32Array;

  constructor() {
    this.scratch = new Uint32Array(1024);
    const decoded: string[] = new Array<string>(GENERATED_WORDS.length);
    for (let i = 0; i < GENERATED_WORDS.length; i++) decoded[i] = ' ' + (GENERATED_WORDS[i] as string);
    this.decoded = decoded;
    this.wordById = new Map();
    const ids: number[] = [];
    for (const text of decoded) {
      const id = this.encode(text)[0] as number;
      // Two words hashing to one id would make decoding ambiguous: keep the first.
      if (this.wordById.has(id)) continue;
      this.wordById.set(id, text);
      ids.push(id);
    }
    this.vocabulary = Uint32Array.from(ids);
  }

  generationVocabulary(): Uint32Array {
    return this.vocabulary;
  }

  decodeFirstToken(id: number): string {
    return this.decodeToken(id);
  }

  decode(ids: Uint32Array): string {
    let out = '';
    for (let i = 0; i < ids.length; i++) out += this.decodeToken(ids[i] as number);
    return out;
  }

  encode(text: string): Uint32Array {
    // A text of n code units has at most n tokens.
    if (this.scratch.length < text.length) this.scratch = new Uint32Array(Math.max(text.length, this.scratch.length * 2));
    const out = this.scratch;
    let n = 0;
    let inWord = false;
    let hash = FNV_OFFSET;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      const cls = classOf(c);
      if (cls === 1) {
        if (!inWord) {
          inWord = true;
          hash = FNV_OFFSET;
        }
        hash = Math.imul(hash ^ c, FNV_PRIME);
        continue;
      }
      if (inWord) {
        out[n++] = finishId(hash);
        inWord = false;
      }
      if (cls === 2) out[n++] = finishId(Math.imul(FNV_OFFSET ^ c, FNV_PRIME));
    }
    if (inWord) out[n++] = finishId(hash);
    return out.slice(0, n);
  }

  decodeToken(id: number): string {
    return this.wordById.get(id) ?? (this.decoded[(id >>> 0) % this.decoded.length] as string);
  }
}
