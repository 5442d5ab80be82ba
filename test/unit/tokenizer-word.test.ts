import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GENERATED_WORDS } from '../../src/tokenizer/generated-words.js';
import { loadTokenizer } from '../../src/tokenizer/tokenizer.js';
import { WORD_TOKEN_ID_MIN, WORD_TOKEN_ID_SPAN, WordTokenizer } from '../../src/tokenizer/word-tokenizer.js';

test('tokenizer word - words and punctuation marks are one token each', () => {
  const t = new WordTokenizer();
  const ids = t.encode('Hello, world! It\'s 2026.');
  // Hello , world ! It ' s 2026 .
  assert.equal(ids.length, 9);
  assert.equal(t.encode('  \t\n ').length, 0, 'whitespace alone has no tokens');
  assert.equal(t.encode('naïve café').length, 2, 'non-ASCII letters stay inside words');
  assert.equal(t.encode('a\u00a0b\u3000c').length, 3, 'Unicode spaces separate words');
  assert.equal(t.encode('snake_case_word').length, 1);
});

test('tokenizer word - ids are a stable hash in [1000, 50000)', () => {
  const t = new WordTokenizer();
  const a = t.encode('the quick brown fox, the end');
  const b = new WordTokenizer().encode('the quick brown fox, the end');
  assert.deepEqual(a, b, 'independent instances agree');
  assert.equal(a[0], a[5], 'the same word always gets the same id');
  assert.notEqual(a[0], a[1]);
  for (const id of a) assert.ok(id >= WORD_TOKEN_ID_MIN && id < WORD_TOKEN_ID_MIN + WORD_TOKEN_ID_SPAN);
  // Pinned: a change of the hash rule changes every prompt's ids, which clients may have recorded.
  assert.deepEqual(Array.from(t.encode('the Hello , a')), [12980, 19851, 45635, 34220]);
  assert.deepEqual(Array.from(t.encode('a')), [1000 + (fnv1a('a') % 49000)]);
  assert.deepEqual(Array.from(t.encode('Hello')), [1000 + (fnv1a('Hello') % 49000)]);
});

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

test('tokenizer word - generated ids decode to " word" and re-encode to one token each', () => {
  const t = new WordTokenizer();
  assert.equal(GENERATED_WORDS.length, 256);
  assert.equal(t.decodeToken(0), ' ' + GENERATED_WORDS[0]);
  assert.equal(t.decodeToken(1000), t.decodeToken(1000 + 256), 'decode is id mod 256');
  let text = '';
  for (let id = 1000; id < 2000; id++) {
    const w = t.decodeToken(id);
    assert.match(w, /^ [a-z]+$/);
    text += w;
  }
  assert.equal(t.encode(text).length, 1000);
  assert.equal(new Set(GENERATED_WORDS).size, 256, 'no duplicate words');
});

test('tokenizer word - loadTokenizer(null) is the word tokenizer', async () => {
  const t = await loadTokenizer(null);
  assert.equal(t.name, 'word');
  assert.deepEqual(t.encode('x y'), new WordTokenizer().encode('x y'));
});
