import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { xxh3 } from '@node-rs/xxhash';
import { xxh3Tokens } from '../../src/engine/kv/xxh3.js';

const XXH3_URL = new URL('../../src/engine/kv/xxh3.js', import.meta.url).href;

/** 64-token blocks: random, extreme and repeated values (the WebAssembly path's input size). */
function blocks(): Uint32Array {
  const n = 40;
  const t = new Uint32Array(n * 64);
  let x = 12345;
  for (let i = 0; i < t.length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    t[i] = x;
  }
  t.fill(0xffffffff, 64, 128);
  t.fill(0, 128, 192);
  t.fill(0x80000000, 192, 256);
  for (let i = 256; i < 320; i++) t[i] = i & 1 ? 0xffffffff : 0;
  return t;
}

function native(t: Uint32Array, b: number): string {
  return xxh3.xxh64(Buffer.from(t.buffer, b * 256, 256), 1337n).toString();
}

test('engine-xxh3 - 64-token blocks hash like @node-rs/xxhash (WebAssembly path when available)', () => {
  const t = blocks();
  const out = new Uint32Array(2);
  for (let b = 0; b < t.length / 64; b++) {
    xxh3Tokens(t, b * 64, 64, out);
    assert.equal(((BigInt(out[0]!) << 32n) | BigInt(out[1]!)).toString(), native(t, b), `block ${b}`);
  }
});

test('engine-xxh3 - without WebAssembly the pure-JS path gives the same 64-token block hashes', () => {
  const t = blocks();
  const script = `
    const { xxh3Tokens } = await import(${JSON.stringify(XXH3_URL)});
    if (typeof WebAssembly !== 'undefined') throw new Error('WebAssembly is still exposed');
    const t = Uint32Array.from(${JSON.stringify(Array.from(t))});
    const out = new Uint32Array(2);
    const res = [];
    for (let b = 0; b < t.length / 64; b++) {
      xxh3Tokens(t, b * 64, 64, out);
      res.push(((BigInt(out[0]) << 32n) | BigInt(out[1])).toString());
    }
    process.stdout.write(JSON.stringify(res));`;
  const stdout = execFileSync(process.execPath, ['--no-expose-wasm', '--input-type=module', '-e', script], { encoding: 'utf8' });
  const got = JSON.parse(stdout) as string[];
  assert.equal(got.length, t.length / 64);
  for (let b = 0; b < got.length; b++) assert.equal(got[b], native(t, b), `block ${b}`);
});
