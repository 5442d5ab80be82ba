/**
 * Tokenizer contract used by the HTTP frontend, plus the loader behind `--tokenizer PATH`.
 * Without a path the fast deterministic word tokenizer is used (see README.md for its rule).
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { InvalidConfigError } from '../util/errors.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { WordTokenizer } from './word-tokenizer.js';

export interface Tokenizer {
  /** Prompt text -> token ids (a fresh array the caller owns). */
  encode(text: string): Uint32Array;
  /**
   * Text one generated token adds after earlier output (Hugging Face DecodeStream: decode(prev +
   * [id]) minus decode(prev)), including the space a space-inserting decoder puts before it.
   */
  decodeToken(id: number): string;
  /** Text of a generated token that starts the output (a DecodeStream's first step). */
  decodeFirstToken(id: number): string;
  /** Token ids -> text (/detokenize, echo of token-id prompts). */
  decode(ids: Uint32Array): string;
  /**
   * The round-tripping subset of the vocabulary generated tokens are drawn from, computed once:
   * any sequence of these ids, decoded as a stream, re-encodes to exactly the same ids.
   */
  generationVocabulary(): Uint32Array;
  readonly name: string;
}

/** Reads a JSON object file; `null` when `optional` and the file does not exist. */
async function readJsonObject(path: string, optional: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (optional && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new InvalidConfigError('--tokenizer', `cannot read ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidConfigError('--tokenizer', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidConfigError('--tokenizer', `${path} must contain a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * `null` -> the word tokenizer. A path -> a Hugging Face `tokenizer.json` (or a directory holding
 * one), with `tokenizer_config.json` from the same directory when present.
 */
export async function loadTokenizer(path: string | null): Promise<Tokenizer> {
  if (path === null) return new WordTokenizer();
  let file = path;
  if (!path.endsWith('.json')) file = join(path, 'tokenizer.json');
  const json = await readJsonObject(file, false);
  if (json === null) throw new InvalidConfigError('--tokenizer', `cannot read ${file}`);
  const config = (await readJsonObject(join(dirname(file), 'tokenizer_config.json'), true)) ?? {};
  const label = path.endsWith('.json') ? basename(dirname(file)) + '/' + basename(file) : basename(path);
  return HfTokenizer.fromJson(json, config, `hf:${label}`);
}
