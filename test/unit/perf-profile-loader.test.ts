import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadInterpolatedPerfModel, loadPerfProfile, loadProfileData, parseNpy } from '../../src/perf/profile-loader.js';
import { InvalidConfigError } from '../../src/util/errors.js';
import { encodeNpy, encodeNpz, encodeZip } from '../support/npz-writer.js';
import type { NpyInput } from '../support/npz-writer.js';

const PROFILE: NpyInput[] = [
  { name: 'prefill_isl', shape: [3], values: [100, 200, 400], dtype: '<i8' },
  { name: 'prefill_ttft_ms', shape: [3], values: [10, 20, 60] },
  { name: 'decode_active_kv_tokens', shape: [2], values: [1000, 2000], dtype: '<f4' },
  { name: 'decode_context_length', shape: [2], values: [100, 300] },
  { name: 'decode_itl', shape: [2, 2], values: [5, 7, 9, 15], deflate: true },
];

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-perf-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const isConfigError = (pattern: RegExp) => (err: unknown): boolean =>
  err instanceof InvalidConfigError && err.field === 'planner-profile-data' && pattern.test(err.message);

test('perf profile loader - reads an NPZ with stored and deflated entries of mixed dtypes', () => {
  withDir((dir) => {
    const file = join(dir, 'perf.npz');
    writeFileSync(file, encodeNpz(PROFILE));
    const p = loadPerfProfile(file);
    assert.deepEqual(Array.from(p.prefillIsl), [100, 200, 400]);
    assert.deepEqual(Array.from(p.prefillTtftMs), [10, 20, 60]);
    assert.deepEqual(Array.from(p.decodeActiveKvTokens), [1000, 2000]);
    assert.deepEqual(Array.from(p.decodeContextLength), [100, 300]);
    assert.deepEqual(Array.from(p.decodeItl), [5, 7, 9, 15]);
    const m = loadInterpolatedPerfModel(file);
    assert.equal(m.prefillMs(1, 300, 0), 40);
    assert.equal(m.decodeMs(1500, 0, 200), 9);
  });
});

test('perf profile loader - reads the JSON form and a directory holding one profile', () => {
  withDir((dir) => {
    const json = {
      prefill_isl: [100, 200, 400],
      prefill_ttft_ms: [10, 20, 60],
      decode_active_kv_tokens: [1000, 2000],
      decode_context_length: [100, 300],
      decode_itl: [
        [5, 7],
        [9, 15],
      ],
    };
    writeFileSync(join(dir, 'profile.json'), JSON.stringify(json));
    const p = loadPerfProfile(dir);
    assert.deepEqual(Array.from(p.decodeItl), [5, 7, 9, 15]);
    writeFileSync(join(dir, 'other.json'), JSON.stringify(json));
    assert.throws(() => loadPerfProfile(dir), isConfigError(/exactly one/));
  });
});

test('perf profile loader - Fortran-order 2-D arrays are transposed to row-major', () => {
  const c = encodeNpy([2, 3], [1, 4, 2, 5, 3, 6]);
  const header = new TextDecoder('latin1').decode(c).replace("'fortran_order': False", "'fortran_order': True ");
  const f = Uint8Array.from(header, (ch) => ch.charCodeAt(0));
  f.set(c.subarray(f.length - 48), f.length - 48);
  const a = parseNpy(f, 'f.npy');
  assert.deepEqual(a.shape, [2, 3]);
  assert.deepEqual(Array.from(a.data), [1, 2, 3, 4, 5, 6]);
});

test('perf profile loader - problems name the field and the file', () => {
  withDir((dir) => {
    const missing = join(dir, 'missing.npz');
    writeFileSync(missing, encodeNpz(PROFILE.filter((a) => a.name !== 'decode_itl')));
    assert.throws(() => loadPerfProfile(missing), isConfigError(/missing\.npz: missing array decode_itl/));

    const badShape = join(dir, 'shape.npz');
    writeFileSync(badShape, encodeNpz([...PROFILE.slice(0, 4), { name: 'decode_itl', shape: [4], values: [5, 7, 9, 15] }]));
    assert.throws(() => loadPerfProfile(badShape), isConfigError(/decode_itl must have shape \(2, 2\)/));

    const badDtype = join(dir, 'dtype.npz');
    const npy = encodeNpy([1], [1]);
    const text = new TextDecoder('latin1').decode(npy).replace('<f8', '>f8');
    writeFileSync(badDtype, encodeZip([{ name: 'prefill_isl.npy', data: Uint8Array.from(text, (ch) => ch.charCodeAt(0)) }]));
    assert.throws(() => loadPerfProfile(badDtype), isConfigError(/unsupported dtype >f8/));

    const notZip = join(dir, 'junk.npz');
    writeFileSync(notZip, 'not json either');
    assert.throws(() => loadPerfProfile(notZip), isConfigError(/invalid JSON/));

    assert.throws(() => loadPerfProfile(join(dir, 'nope.npz')), isConfigError(/cannot read/));

    const unsorted = join(dir, 'unsorted.json');
    writeFileSync(
      unsorted,
      JSON.stringify({ prefill_isl: [2, 1], prefill_ttft_ms: [1, 2], decode_active_kv_tokens: [1, 2], decode_context_length: [1, 2], decode_itl: [[1, 2], [3, 4]] }),
    );
    assert.throws(() => loadInterpolatedPerfModel(unsorted), isConfigError(/strictly increasing/));
  });
});

test('perf profile loader - loadProfileData validates the arrays before handing them to the fleet', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-perf-'));
  try {
    const good = join(dir, 'good.npz');
    writeFileSync(good, encodeNpz(PROFILE));
    const arrays = await loadProfileData(good);
    assert.deepEqual(Array.from(arrays.decodeItl), [5, 7, 9, 15]);
    const bad = join(dir, 'bad.npz');
    writeFileSync(bad, encodeNpz([{ name: 'prefill_isl', shape: [2], values: [3, 1] }, ...PROFILE.slice(1)]));
    await assert.rejects(loadProfileData(bad), isConfigError(/bad\.npz: profile array prefill_isl must be strictly increasing/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
