import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildTable } from '../../src/trace/child-table.js';

test('trace-child-table - lookups match a reference map across growth, including u32 ids above 2^31', () => {
  const t = new ChildTable();
  const ref = new Map<string, number>();
  let x = 7;
  const next = (): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x;
  };
  for (let child = 1; child <= 50000; child++) {
    const parent = next() % 2000;
    const id = next() | 0;
    if (ref.has(`${parent}:${id}`)) continue;
    t.set(parent, id, child);
    ref.set(`${parent}:${id}`, child);
  }
  for (const [k, v] of ref) {
    const [p, i] = k.split(':').map(Number) as [number, number];
    assert.equal(t.get(p, i), v);
  }
  assert.equal(t.get(123456, 42), 0, 'unknown edges read as 0');
});
