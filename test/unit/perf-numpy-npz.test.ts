import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadInterpolatedPerfModel, loadPerfProfile } from '../../src/perf/profile-loader.js';

// Written by numpy 2.4 itself (np.savez and np.savez_compressed, which force ZIP64 entries),
// with Dynamo's planner-profile array names; see test/fixtures/profile/.
const fixture = (name: string): string => fileURLToPath(new URL(`../../../test/fixtures/profile/${name}`, import.meta.url));

for (const name of ['planner_profile_savez.npz', 'planner_profile_compressed.npz']) {
  test(`perf - a planner profile written by numpy (${name}) loads and interpolates`, () => {
    const arrays = loadPerfProfile(fixture(name));
    assert.equal(arrays.prefillIsl.length, 8);
    assert.equal(arrays.decodeItl.length, 4 * 3);
    const model = loadInterpolatedPerfModel(fixture(name));
    assert.ok(Math.abs(model.prefillMs(1, 128, 0) - 18.45248128) < 1e-4, 'prefill at the first grid point');
    assert.ok(Math.abs(model.prefillMs(1, 8192, 0) - 169.20412288) < 1e-3, 'prefill at the last grid point');
    assert.ok(Math.abs(model.decodeMs(100000, 16384 * 64, 1024) - 9.2) < 1e-6, 'decode at a grid point');
    const mid = model.decodeMs(250000, 16384 * 64, 1024);
    assert.ok(mid > 9.2 && mid < 17.6, `bilinear between rows: ${mid}`);
  });
}
