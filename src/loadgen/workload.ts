/**
 * Request bodies for synthetic workloads: input/output lengths (fixed or normal with a std-dev),
 * prompts as token ids (exact length) or as text built for the server's tokenizer, optional shared
 * prefixes (Dynamo synthetic traces: shared_prefix_ratio × ISL tokens common to each of
 * num_prefix_groups groups).
 */
import { Rng } from './rng.js';
import type { SseApi } from './sse.js';

export type PromptFormat = 'token-ids' | 'text';

/** Random prompt token ids are drawn from [TOKEN_ID_MIN, TOKEN_ID_MAX): clear of special tokens, inside any real vocabulary. */
export const TOKEN_ID_MIN = 1000;
export const TOKEN_ID_MAX = 30000;

/**
 * Common English words that are one token each in mockfleet's default tokenizer (one token per
 * word or punctuation mark) and, with a leading space, in common BPE vocabularies.
 */
export const WORDS: readonly string[] = (
  'the of and to in is was for on that with as by at from his her are this which be or have an not they ' +
  'had but one were all we there been has their more when who will would can no if out so said what up its ' +
  'about into than them only some could other new time these two may then do first any my now such like our ' +
  'over man me even most made after also did many before must through back years where much your way well down ' +
  'should because each just those people how too little state good very make world still own see men work long ' +
  'get here between both life being under never day same another know while last might us great old year off ' +
  'come since against go came right used take three'
).split(' ');

/** Fresh random tokens at the start of every prompt's unshared part. */
export const UNIQUE_HEAD_TOKENS = 32;
const TAIL_POOL_SIZE = 64;
const TAIL_POOL_MAX_TOKENS = 4_000_000;

export interface WorkloadSpec {
  api: SseApi;
  /** Model name sent in the body; null omits the field. */
  model: string | null;
  promptFormat: PromptFormat;
  isl: number;
  islStddev: number;
  osl: number;
  oslStddev: number;
  sharedPrefixRatio: number;
  numPrefixGroups: number;
  ignoreEos: boolean;
  seed: number;
}

export interface BuiltRequest {
  body: string;
  /** Prompt tokens intended (exact for token ids and mockfleet's tokenizer). */
  isl: number;
  osl: number;
}

export class RequestFactory {
  private readonly spec: WorkloadSpec;
  private readonly rng: Rng;
  private readonly prefixLen: number;
  /** Per group: the prefix rendered as comma-separated ids or space-separated words. */
  private readonly prefixes: RenderedSeq[];
  /** Pre-rendered random sequences the body of each prompt is cut from (see next()). */
  private readonly tailPool: RenderedSeq[];
  private readonly sep: string;
  private readonly head: string;
  private readonly tailFields: string;

  constructor(spec: WorkloadSpec) {
    this.spec = spec;
    this.rng = new Rng(spec.seed);
    this.prefixLen = spec.sharedPrefixRatio > 0 ? Math.round(spec.isl * spec.sharedPrefixRatio) : 0;
    this.sep = spec.promptFormat === 'token-ids' ? ',' : ' ';
    this.prefixes = [];
    if (this.prefixLen > 0) {
      for (let g = 0; g < spec.numPrefixGroups; g++) {
        const grng = new Rng((spec.seed ^ 0x5eed) + g * 7919);
        this.prefixes.push(this.renderSeq(grng, this.prefixLen));
      }
    }
    const tailLen = Math.max(0, Math.ceil(spec.isl + 4 * spec.islStddev) - this.prefixLen - UNIQUE_HEAD_TOKENS);
    const poolSize = tailLen === 0 ? 0 : Math.max(4, Math.min(TAIL_POOL_SIZE, Math.floor(TAIL_POOL_MAX_TOKENS / tailLen)));
    const prng = new Rng(spec.seed ^ 0x7a11);
    this.tailPool = [];
    for (let i = 0; i < poolSize; i++) this.tailPool.push(this.renderSeq(prng, tailLen));
    const model = spec.model === null ? '' : `"model":${JSON.stringify(spec.model)},`;
    this.head = `{${model}`;
    this.tailFields = `,"stream":true,"stream_options":{"include_usage":true}${spec.ignoreEos ? ',"ignore_eos":true' : ''}}`;
  }

  /** Length from N(mean, std) rounded, at least 1; exactly `mean` when std is 0. */
  sampleLength(mean: number, std: number): number {
    if (std <= 0) return mean;
    return Math.max(1, Math.round(mean + std * this.rng.normal()));
  }

  next(): BuiltRequest {
    const s = this.spec;
    const isl = this.sampleLength(s.isl, s.islStddev);
    const osl = this.sampleLength(s.osl, s.oslStddev);
    // Layout: [shared prefix of the group][UNIQUE_HEAD_TOKENS fresh random tokens][cut of a pooled
    // random sequence]. The fresh tokens make every prompt diverge right after its shared prefix,
    // so chained block hashes (vLLM, mockfleet) and radix trees (SGLang) see no other sharing;
    // the pooled remainder keeps body building cheap at high request rates.
    let prompt = '';
    let rest = isl;
    if (this.prefixLen > 0) {
      const g = this.prefixes[this.rng.int(0, this.prefixes.length)] as RenderedSeq;
      const p = Math.min(this.prefixLen, isl);
      prompt = g.text.slice(0, g.ends[p - 1] as number);
      rest = isl - p;
    }
    if (rest > 0) {
      const headLen = Math.min(rest, UNIQUE_HEAD_TOKENS);
      const head = this.renderRandom(this.rng, headLen);
      prompt = prompt === '' ? head : prompt + this.sep + head;
      const tailLen = rest - headLen;
      if (tailLen > 0) {
        const pooled = this.tailPool.length > 0 ? (this.tailPool[this.rng.int(0, this.tailPool.length)] as RenderedSeq) : null;
        const tail = pooled !== null && pooled.ends.length >= tailLen ? pooled.text.slice(0, pooled.ends[tailLen - 1] as number) : this.renderRandom(this.rng, tailLen);
        prompt = prompt + this.sep + tail;
      }
    }
    let promptField: string;
    if (s.promptFormat === 'token-ids') promptField = `"prompt":[${prompt}]`;
    // WORDS are plain ASCII letters: the text needs no JSON escaping.
    else if (s.api === 'chat') promptField = `"messages":[{"role":"user","content":"${prompt}"}]`;
    else promptField = `"prompt":"${prompt}"`;
    return { body: `${this.head}${promptField},"max_tokens":${osl}${this.tailFields}`, isl, osl };
  }

  private renderSeq(rng: Rng, n: number): RenderedSeq {
    const text = this.renderRandom(rng, n);
    const ends = new Int32Array(n);
    let at = -1;
    for (let k = 0; k < n - 1; k++) {
      at = text.indexOf(this.sep, at + 1);
      ends[k] = at;
    }
    if (n > 0) ends[n - 1] = text.length;
    return { text, ends };
  }

  private renderRandom(rng: Rng, n: number): string {
    let out = '';
    if (this.spec.promptFormat === 'token-ids') {
      const ids = idStrings();
      for (let i = 0; i < n; i++) out += (i === 0 ? '' : ',') + (ids[rng.nextU32() % ids.length] as string);
    } else {
      for (let i = 0; i < n; i++) out += (i === 0 ? '' : ' ') + (WORDS[rng.nextU32() % WORDS.length] as string);
    }
    return out;
  }
}

let ID_STRINGS: string[] | null = null;

/** Decimal strings of every random-prompt token id, built once (number formatting was a hot spot). */
function idStrings(): string[] {
  if (ID_STRINGS === null) {
    ID_STRINGS = [];
    for (let id = TOKEN_ID_MIN; id < TOKEN_ID_MAX; id++) ID_STRINGS.push(String(id));
  }
  return ID_STRINGS;
}

/** A rendered item list and the end offset of each item (prefix of n items = text.slice(0, ends[n - 1])). */
interface RenderedSeq {
  text: string;
  ends: Int32Array;
}

/** JSON body of a token-id completions request (trace replay, probes). */
export function tokenIdsBody(model: string | null, tokens: ArrayLike<number>, maxTokens: number, ignoreEos: boolean, stream: boolean): string {
  let ids = '';
  for (let i = 0; i < tokens.length; i++) ids += (i === 0 ? '' : ',') + (tokens[i] as number);
  const m = model === null ? '' : `"model":${JSON.stringify(model)},`;
  const st = stream ? ',"stream":true,"stream_options":{"include_usage":true}' : ',"stream":false';
  return `{${m}"prompt":[${ids}],"max_tokens":${maxTokens}${st}${ignoreEos ? ',"ignore_eos":true' : ''}}`;
}
