/**
 * JSON string literals of generated tokens' text, built once per token id so the streaming path
 * concatenates cached strings instead of calling JSON.stringify per token.
 */
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { jsonAscii } from './json-ascii.js';

/** Ids below this are cached; larger ids (rare, backend-specific) are quoted on every use. */
const MAX_CACHED_ID = 1 << 20;

/** What follows the token text in a streamed chunk, per response kind. */
export const CHAT_TOKEN_SUFFIX = '},"logprobs":null,"finish_reason":null}]}\n\n';
export const COMPLETION_TOKEN_SUFFIX = ',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n';

export class TokenTextCache {
  private readonly tokenizer: Tokenizer;
  private readonly quoted: (string | undefined)[];
  /** Bytes of `"text"` + suffix, per token id, for chat and for completion chunks. */
  private readonly chatTails: (Buffer | undefined)[];
  private readonly completionTails: (Buffer | undefined)[];
  /** Tails of tokens that start the output (their DecodeStream text may differ: no leading space). */
  private readonly firstTails: Map<number, Buffer>;

  constructor(tokenizer: Tokenizer) {
    this.tokenizer = tokenizer;
    this.quoted = [];
    this.chatTails = [];
    this.completionTails = [];
    this.firstTails = new Map();
  }

  /** tokenTail for the first generated token of a response. */
  firstTokenTail(id: number, chat: boolean): Buffer {
    const key = chat ? -1 - id : id;
    const cached = this.firstTails.get(key);
    if (cached !== undefined) return cached;
    const b = Buffer.from(jsonAscii(this.tokenizer.decodeFirstToken(id)) + (chat ? CHAT_TOKEN_SUFFIX : COMPLETION_TOKEN_SUFFIX), 'latin1');
    if (this.firstTails.size < 1 << 16) this.firstTails.set(key, b);
    return b;
  }

  /** ASCII bytes of the token's quoted text followed by the chunk suffix of `chat` or completion responses. */
  tokenTail(id: number, chat: boolean): Buffer {
    const tails = chat ? this.chatTails : this.completionTails;
    if (id < MAX_CACHED_ID) {
      const cached = tails[id];
      if (cached !== undefined) return cached;
    }
    const b = Buffer.from(this.quotedText(id) + (chat ? CHAT_TOKEN_SUFFIX : COMPLETION_TOKEN_SUFFIX), 'latin1');
    if (id < MAX_CACHED_ID) {
      while (tails.length < id) tails.push(undefined);
      tails[id] = b;
    }
    return b;
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
