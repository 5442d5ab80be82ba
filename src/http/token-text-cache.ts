/**
 * JSON string literals of generated tokens' text, built once per token id so the streaming path
 * concatenates cached strings instead of calling JSON.stringify per token.
 */
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { jsonAscii } from './json-ascii.js';

/** Ids below this are cached; larger ids (rare, backend-specific) are quoted on every use. */
const MAX_CACHED_ID = 1 << 20;

export class TokenTextCache {
  private readonly tokenizer: Tokenizer;
  private readonly quoted: (string | undefined)[];

  constructor(tokenizer: Tokenizer) {
    this.tokenizer = tokenizer;
    this.quoted = [];
  }

  /** `"text"` with JSON escaping (ASCII only), ready to splice into a chunk. */
  quotedText(id: number): string {
    if (id >= MAX_CACHED_ID) return jsonAscii(this.tokenizer.decodeToken(id));
    const cached = this.quoted[id];
    if (cached !== undefined) return cached;
    const q = jsonAscii(this.tokenizer.decodeToken(id));
    while (this.quoted.length < id) this.quoted.push(undefined);
    this.quoted[id] = q;
    return q;
  }
}
