/**
 * Micro-benchmark: ns per XXH3-64 hash of one 64-token (256-byte) block, xxh3Tokens (its
 * WebAssembly path when available, else pure JS) vs @node-rs/xxhash (native, BigInt result), plus
 * the 16-byte chain step. Prints one JSON line.
 */
import { xxh3 } from '@node-rs/xxhash';
import { xxh3Chain, xxh3Tokens } from '../src/engine/kv/xxh3.js';

const TOKENS = 64;
const N = 200_000;
const tokens = new Uint32Array(TOKENS * 16);
for (let i = 0; i < tokens.length; i++) tokens[i] = (i * 2654435761) >>> 0;
const bytes = Buffer.from(tokens.buffer);
const out = new Uint32Array(2);
const seed = 1337n;

function timeJs(): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    xxh3Tokens(tokens, (i & 15) * TOKENS, TOKENS, out);
    sink ^= out[1]!;
  }
  const ns = Number(process.hrtime.bigint() - t0) / N;
  if (sink === 0.5) throw new Error('unreachable');
  return ns;
}

function timeNative(): number {
  let sink = 0n;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const off = (i & 15) * TOKENS * 4;
    sink ^= xxh3.xxh64(bytes.subarray(off, off + TOKENS * 4), seed);
  }
  const ns = Number(process.hrtime.bigint() - t0) / N;
  if (sink === -1n) throw new Error('unreachable');
  return ns;
}

function timeChain(): number {
  let h = 1, l = 2;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    xxh3Chain(h, l, i, i * 3, out);
    h = out[0]!; l = out[1]!;
  }
  return Number(process.hrtime.bigint() - t0) / N;
}

// Interleaved rounds, best of each: the first round warms the JIT, and taking the minimum
// filters out interference from other processes on a shared machine.
let js = Infinity, native = Infinity, chain = Infinity;
for (let round = 0; round < 7; round++) {
  js = Math.min(js, timeJs());
  native = Math.min(native, timeNative());
  chain = Math.min(chain, timeChain());
}
console.log(JSON.stringify({
  bench: 'xxh3',
  input_bytes: TOKENS * 4,
  js_ns_per_hash: Math.round(js),
  node_rs_ns_per_hash: Math.round(native),
  js_chain_ns_per_hash: Math.round(chain),
  js_vs_node_rs: Number((native / js).toFixed(2)),
  webassembly: typeof (globalThis as { WebAssembly?: unknown }).WebAssembly === 'object',
}));
