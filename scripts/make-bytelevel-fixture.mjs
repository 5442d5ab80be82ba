#!/usr/bin/env node
/**
 * Writes test/fixtures/bytelevel-bpe/tokenizer.json: a small byte-level BPE tokenizer in the
 * layout of GPT-2 / Llama 3 / Qwen tokenizer.json files (ByteLevel pre-tokenizer with the GPT-2
 * regex, ByteLevel decoder, 256-symbol byte alphabet, merges), with whole-word tokens for a list of
 * common words with and without the "Ġ" (space) prefix, plus chains of merges for their prefixes.
 * Run from the repo root: node scripts/make-bytelevel-fixture.mjs
 */
import { mkdirSync, writeFileSync } from 'node:fs';

const WORDS = `the of and to in is that for it as was with be by on not he this are or his from at which but have an they
one you were her all she there would their we him been has when who will more no if out so said what up its about into
than them can only other new some could time these two may then do first any my now such like our over man me even most
made after also did many before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here between both life being under
never day same another know while last might us great old year off come since against go came right used take three
river stone water cloud field forest garden harbor island meadow mountain ocean valley window bridge castle tower village
market letter number paper story answer question reason moment minute morning evening winter summer spring autumn silver
golden purple orange yellow green blue red white black gentle quiet bright swift calm brave clever simple honest apple
bread candle desert engine feather glass hammer iron jacket kettle ladder mirror needle orchard pencil rabbit saddle
thunder umbrella velvet wagon yarn anchor basket copper dragon echo falcon glacier hollow ivory jungle kingdom lantern
marble nectar oyster pepper quartz ribbon shadow timber tunnel violet willow zephyr beacon canyon dune ember fjord grove
horizon lagoon hello`.split(/\s+/).filter((w) => w.length > 0);

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
const byteChars = [];
let extra = 0;
for (let b = 0; b < 256; b++) {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  byteChars.push(printable ? String.fromCharCode(b) : String.fromCharCode(256 + extra++));
}
const vocab = { '<|endoftext|>': 0 };
const add = (tok) => {
  if (!(tok in vocab)) vocab[tok] = Object.keys(vocab).length;
};
for (const c of byteChars) add(c);
const merges = [];
const seen = new Set();
const chain = (symbols) => {
  let left = symbols[0];
  for (let i = 1; i < symbols.length; i++) {
    const key = `${left} ${symbols[i]}`;
    if (!seen.has(key)) {
      seen.add(key);
      merges.push(key);
    }
    left += symbols[i];
    add(left);
  }
};
// Space-prefixed words first: their merges outrank the bare-word ones.
for (const w of WORDS) chain(['\u0120', ...w]);
for (const w of WORDS) chain([...w]);

const json = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{ id: 0, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
  },
};
mkdirSync('test/fixtures/bytelevel-bpe', { recursive: true });
writeFileSync('test/fixtures/bytelevel-bpe/tokenizer.json', JSON.stringify(json) + '\n');
console.log(`vocab ${Object.keys(vocab).length}, merges ${merges.length}`);
