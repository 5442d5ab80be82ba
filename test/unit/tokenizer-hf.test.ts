import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../../src/tokenizer/tokenizer.js';
import { InvalidConfigError } from '../../src/util/errors.js';

const DIR = new URL('../../../test/fixtures/tiny-bpe', import.meta.url).pathname;

test('tokenizer hf - a tokenizer.json fixture encodes with its BPE merges', async () => {
  const t = await loadTokenizer(join(DIR, 'tokenizer.json'));
  assert.equal(t.name, 'hf:tiny-bpe/tokenizer.json');
  assert.deepEqual(Array.from(t.encode('hello world')), [12, 16]);
  assert.deepEqual(Array.from(t.encode('hello hello')), [12, 5, 12], 'unmerged "Ġ" stays its own token');
  assert.deepEqual(Array.from(t.encode('xyz')), [0, 0, 0], 'unknown characters map to <unk>');
});

test('tokenizer hf - a directory path loads its tokenizer.json', async () => {
  const t = await loadTokenizer(DIR);
  assert.equal(t.name, 'hf:tiny-bpe');
  assert.deepEqual(Array.from(t.encode('hello world')), [12, 16]);
});

test('tokenizer hf - decodeToken renders byte-level tokens and wraps ids beyond the vocabulary', async () => {
  const t = await loadTokenizer(DIR);
  assert.equal(t.decodeToken(16), ' world');
  assert.equal(t.decodeToken(12), 'hello');
  assert.equal(t.decodeToken(16 + 18), ' world', 'vocabulary of 18: id 34 wraps to 16');
  assert.equal(t.decodeToken(1016), t.decodeToken(1016 % 18));
});

test('tokenizer hf - unreadable or invalid files raise InvalidConfigError for --tokenizer', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mockfleet-tok-'));
  await writeFile(join(dir, 'broken.json'), '{not json');
  await writeFile(join(dir, 'array.json'), '[1,2]');
  await writeFile(join(dir, 'nomodel.json'), '{"model": {"type": "Nonsense"}}');
  for (const p of [join(dir, 'missing.json'), join(dir, 'broken.json'), join(dir, 'array.json'), join(dir, 'nomodel.json'), dir]) {
    await assert.rejects(loadTokenizer(p), (err: unknown) => err instanceof InvalidConfigError && err.field === '--tokenizer', p);
  }
});
