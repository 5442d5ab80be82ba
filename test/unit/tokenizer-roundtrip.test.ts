/**
 * Exact re-tokenisation: a stream of generation-vocabulary ids, decoded like Hugging Face's
 * DecodeStream (first token alone, later ones as the text they add), re-encodes to the same ids,
 * for byte-level BPE and for space-inserting decoders (WordPiece, Metaspace).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generatedTokenId } from '../../src/engine/generated-tokens.js';
import { HfTokenizer } from '../../src/tokenizer/hf-tokenizer.js';
import { loadTokenizer } from '../../src/tokenizer/tokenizer.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { WordTokenizer } from '../../src/tokenizer/word-tokenizer.js';
import { GENERATED_WORDS } from '../../src/tokenizer/generated-words.js';

const BYTELEVEL = new URL('../../../test/fixtures/bytelevel-bpe/tokenizer.json', import.meta.url).pathname;
const WORDS = ['river', 'stone', 'water', 'cloud', 'field', 'forest', 'garden', 'harbor'];

function streamText(t: Tokenizer, ids: readonly number[]): string {
  let text = '';
  for (let k = 0; k < ids.length; k++) text += k === 0 ? t.decodeFirstToken(ids[k] as number) : t.decodeToken(ids[k] as number);
  return text;
}

function assertRoundTrip(t: Tokenizer, count: number, seed: number): string {
  const vocab = t.generationVocabulary();
  const ids: number[] = [];
  for (let k = 0; k < count; k++) ids.push(generatedTokenId(vocab, seed, k));
  const text = streamText(t, ids);
  assert.deepEqual(Array.from(t.encode(text)).filter((id) => id !== 0 || vocab.includes(0)).slice(-count), ids, `${t.name}: re-encodes to the generated ids`);
  return text;
}

function wordPiece(): HfTokenizer {
  const vocab: Record<string, number> = { '[UNK]': 0, '##s': 1 };
  for (const w of WORDS) vocab[w] = Object.keys(vocab).length;
  return HfTokenizer.fromJson({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  }, {}, 'wordpiece');
}

function metaspace(): HfTokenizer {
  const vocab: Record<string, number> = { '<unk>': 0, '\u2581': 1 };
  const merges: string[] = [];
  const add = (t: string): void => {
    if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
  };
  for (const w of WORDS) for (const c of w) add(c);
  for (const w of WORDS) {
    let left = '\u2581';
    for (const c of w) {
      merges.push(`${left} ${c}`);
      left += c;
      add(left);
    }
  }
  return HfTokenizer.fromJson({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 0, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    post_processor: null,
    decoder: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  }, {}, 'metaspace');
}

test('tokenizer round-trip - the word tokenizer generates its 256 words by their own ids', () => {
  const t = new WordTokenizer();
  const vocab = t.generationVocabulary();
  assert.ok(vocab.length >= 250, `${vocab.length} words (two words whose hashes collide are left out)`);
  assert.equal(new Set(Array.from(vocab).map((id) => t.decodeToken(id))).size, vocab.length, "one word per id");
  assert.equal(t.decodeToken(vocab[0] as number), ` ${GENERATED_WORDS[0]}`);
  assert.deepEqual(Array.from(t.encode(t.decodeToken(vocab[5] as number))), [vocab[5]]);
  assertRoundTrip(t, 1024, 7);
  assert.equal(t.decode(Uint32Array.from([vocab[1] as number, vocab[2] as number])), ` ${GENERATED_WORDS[1]} ${GENERATED_WORDS[2]}`);
});

test('tokenizer round-trip - byte-level BPE: 1024 generated tokens re-encode to exactly 1024', async () => {
  const t = await loadTokenizer(BYTELEVEL);
  const vocab = t.generationVocabulary();
  assert.ok(vocab.length > 300, `${vocab.length} round-tripping tokens`);
  assert.equal(t.generationVocabulary(), vocab, 'computed once');
  const text = assertRoundTrip(t, 1024, 2024);
  assert.ok(text.startsWith(' '), 'byte-level tokens keep their space');
  assert.equal(t.encode(text).length, 1024);
});

test('tokenizer round-trip - space-inserting decoders (WordPiece, Metaspace) give "w1 w2", not "w1w2"', () => {
  for (const t of [wordPiece(), metaspace()]) {
    const vocab = t.generationVocabulary();
    const firsts = new Set(Array.from(vocab).map((id) => t.decodeFirstToken(id)));
    for (const w of WORDS) assert.ok(firsts.has(w), `${t.name}: ${w} is generated`);
    for (const f of firsts) assert.match(f, /^[a-z]+$/, `${t.name}: a first token has no leading space`);
    for (const id of vocab) assert.match(t.decodeToken(id), /^ [a-z]+$/, `${t.name}: later tokens bring their space`);
    const text = assertRoundTrip(t, 1024, 3);
    assert.match(text, /^[a-z]+( [a-z]+){1023}$/, `${t.name}: words separated by single spaces`);
    assert.equal(t.encode(text).length, 1024, t.name);
  }
});
