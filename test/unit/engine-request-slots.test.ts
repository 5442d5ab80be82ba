import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RequestSlotMap } from '../../src/engine/request-slots.js';
import { xorshift32 } from '../support/xorshift.js';

test('request slot map - agrees with a Map under random sets and deletes, through growth and wrapped probe runs', () => {
  const m = new RequestSlotMap();
  const ref = new Map<number, number>();
  const rnd = xorshift32(7);
  // A small id space (so probe runs collide, wrap and shift on deletion) and occasional huge ids.
  const pick = (): number => ((rnd() & 7) === 0 ? 0x7fffffff - (rnd() & 15) : rnd() % 200);
  for (let step = 0; step < 50_000; step++) {
    const id = pick();
    // Grow to ~150 live ids, then hover around ~40 (deletes outnumber sets).
    const deleting = step < 20_000 ? (rnd() & 3) === 0 : (rnd() & 3) !== 0;
    if (ref.has(id)) {
      assert.equal(m.has(id), true);
      assert.equal(m.get(id), ref.get(id));
      if (deleting) {
        assert.equal(m.delete(id), true);
        ref.delete(id);
      }
    } else {
      assert.equal(m.get(id), -1);
      assert.equal(m.has(id), false);
      assert.equal(m.delete(id), false, 'absent id');
      if (!deleting) {
        const slot = rnd() & 0xffff;
        m.set(id, slot);
        ref.set(id, slot);
      }
    }
    assert.equal(m.size, ref.size);
    if (step % 997 === 0) for (const [k, v] of ref) assert.equal(m.get(k), v, `id ${k} after step ${step}`);
  }
  assert.ok(ref.size > 0);
});

test('request slot map - ids 0 and 2^31 − 1 are keys like any other; −1 is never found', () => {
  const m = new RequestSlotMap();
  m.set(0, 3);
  m.set(0x7fffffff, 4);
  assert.equal(m.get(0), 3);
  assert.equal(m.get(0x7fffffff), 4);
  assert.equal(m.get(-1), -1);
  assert.equal(m.delete(0), true);
  assert.equal(m.get(0), -1);
  assert.equal(m.get(0x7fffffff), 4);
  assert.equal(m.size, 1);
});
