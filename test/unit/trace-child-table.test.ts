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

test('trace-child-table - edges keyed by their prefix (prefixKey) are found across growth; warm() reads their slots', () => {
  // A random trie walked from the root, each edge keyed by the rolling key of its path.
  const t = new ChildTable();
  const ref = new Map<string, number>();
  let x = 11;
  const next = (): number => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x;
  };
  let nodes = 1;
  const paths: number[][] = [];
  for (let p = 0; p < 3000; p++) {
    const path: number[] = [];
    let node = 0, key = ChildTable.ROOT_KEY;
    for (let d = 0, len = 1 + (next() % 12); d < len; d++) {
      const id = (next() % (d < 3 ? 3 : 1000)) | 0;
      path.push(id);
      key = ChildTable.prefixKey(key, id);
      let c = t.get(node, id, key);
      if (c === 0) {
        c = nodes++;
        t.set(node, id, c, key);
        ref.set(`${node}:${id}`, c);
      }
      node = c;
    }
    paths.push(path);
  }
  assert.ok(nodes > 8192, `the table grew (${nodes} nodes)`);
  // Walk every path again: the same nodes, whatever slot growth moved them to.
  const keys = new Int32Array(16);
  for (const path of paths) {
    let node = 0, key = ChildTable.ROOT_KEY;
    for (let d = 0; d < path.length; d++) keys[d] = key = ChildTable.prefixKey(key, path[d] as number);
    assert.equal(typeof t.warm(keys, path.length), 'number');
    for (let d = 0; d < path.length; d++) {
      const c = t.get(node, path[d] as number, keys[d] as number);
      assert.equal(c, ref.get(`${node}:${path[d]}`));
      node = c;
    }
  }
  // Keys depend on the whole prefix: the same id after different prefixes gets different keys.
  assert.notEqual(ChildTable.prefixKey(ChildTable.prefixKey(ChildTable.ROOT_KEY, 1), 7), ChildTable.prefixKey(ChildTable.prefixKey(ChildTable.ROOT_KEY, 2), 7));
});
