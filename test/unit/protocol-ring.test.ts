import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Doorbell, SpscRing } from '../../src/protocol/ring.js';

/** Deterministic record contents: byte k of record i. */
function fill(buf: Uint8Array, i: number, len: number): void {
  for (let k = 0; k < len; k++) buf[k] = (i * 31 + k * 7) & 0xff;
}
function check(buf: Uint8Array, i: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (buf[k] !== ((i * 31 + k * 7) & 0xff)) return false;
  return true;
}
/** Small seeded LCG so lengths are reproducible. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

test('ring - allocate rejects sizes that are not a power of two', () => {
  assert.throws(() => SpscRing.allocate(100), RangeError);
  assert.throws(() => SpscRing.allocate(32), RangeError);
  assert.throws(() => new SpscRing(new SharedArrayBuffer(192 + 100)), RangeError);
  const ring = new SpscRing(SpscRing.allocate(1024));
  assert.equal(ring.capacity, 1024);
  assert.equal(ring.maxRecordBytes, 1020);
});

test('ring - an empty ring reads -1 and a written record reads back whole', () => {
  const ring = new SpscRing(SpscRing.allocate(256));
  const dst = new Uint8Array(ring.maxRecordBytes);
  assert.equal(ring.read(dst), -1);
  assert.equal(ring.peekLength(), -1);
  const src = new Uint8Array(200);
  fill(src, 1, 13);
  assert.equal(ring.tryWrite(src, 0, 13), true);
  assert.equal(ring.usedBytes(), 4 + 16, 'record = 4-byte length + payload padded to 4');
  assert.equal(ring.peekLength(), 13);
  assert.equal(ring.read(dst), 13);
  assert.ok(check(dst, 1, 13));
  assert.equal(ring.read(dst), -1);
  assert.equal(ring.usedBytes(), 0);
});

test('ring - writes from an offset of the source and reads into an offset of the destination', () => {
  const ring = new SpscRing(SpscRing.allocate(256));
  const src = new Uint8Array(50);
  fill(src.subarray(10), 2, 20);
  assert.ok(ring.tryWrite(src, 10, 20));
  const dst = new Uint8Array(64);
  assert.equal(ring.read(dst, 5), 20);
  assert.ok(check(dst.subarray(5), 2, 20));
});

test('ring - a full ring refuses the write and accepts it again after a read', () => {
  const ring = new SpscRing(SpscRing.allocate(64));
  const src = new Uint8Array(64);
  const dst = new Uint8Array(64);
  // 3 records of 16 bytes payload = 3 x 20 = 60 bytes used; 4 left.
  for (let i = 0; i < 3; i++) {
    fill(src, i, 16);
    assert.ok(ring.tryWrite(src, 0, 16), `record ${i} fits`);
  }
  assert.equal(ring.tryWrite(src, 0, 1), false, 'a 1-byte record needs 8 bytes, only 4 are free');
  assert.equal(ring.tryWrite(src, 0, 0), true, 'an empty record needs exactly the 4 free bytes');
  assert.equal(ring.usedBytes(), 64);
  assert.equal(ring.highWaterBytes(), 64);
  assert.equal(ring.read(dst), 16);
  assert.ok(check(dst, 0, 16));
  fill(src, 9, 16);
  assert.ok(ring.tryWrite(src, 0, 16), 'space freed by the read is reusable');
  assert.equal(ring.read(dst), 16);
  assert.ok(check(dst, 1, 16));
  assert.equal(ring.read(dst), 16);
  assert.ok(check(dst, 2, 16));
  assert.equal(ring.read(dst), 0);
  assert.equal(ring.read(dst), 16);
  assert.ok(check(dst, 9, 16));
  assert.equal(ring.read(dst), -1);
});

test('ring - a record larger than the ring is rejected with an error, not truncated', () => {
  const ring = new SpscRing(SpscRing.allocate(64));
  assert.throws(() => ring.tryWrite(new Uint8Array(100), 0, 61), RangeError);
  const dst = new Uint8Array(8);
  ring.tryWrite(new Uint8Array(60), 0, 60);
  assert.throws(() => ring.read(dst), RangeError, 'a too-small destination is an error');
});

test('ring - payloads that straddle the end wrap around intact, large and small', () => {
  for (const cap of [64, 256]) {
    const ring = new SpscRing(SpscRing.allocate(cap));
    const src = new Uint8Array(cap);
    const dst = new Uint8Array(cap);
    const rnd = lcg(cap);
    let written = 0;
    let read = 0;
    // Odd lengths make every alignment/straddle position occur.
    for (let round = 0; round < 5000; round++) {
      const len = rnd() % (ring.maxRecordBytes / 2);
      fill(src, written, len);
      while (!ring.tryWrite(src, 0, len)) {
        const n = ring.read(dst);
        assert.ok(n >= 0);
        assert.ok(check(dst, read, n), `record ${read} intact (cap ${cap})`);
        read++;
      }
      written++;
    }
    for (let n = ring.read(dst); n >= 0; n = ring.read(dst)) {
      assert.ok(check(dst, read, n), `record ${read} intact`);
      read++;
    }
    assert.equal(read, written);
  }
});

test('ring - byte counters keep working across the u32 wrap of head and tail', () => {
  const sab = SpscRing.allocate(64);
  const header = new Int32Array(sab, 0, 48);
  // Start both counters (HEAD at word 0, TAIL at word 16) just below 2^32.
  header[0] = -24;
  header[16] = -24;
  const ring = new SpscRing(sab);
  const src = new Uint8Array(64);
  const dst = new Uint8Array(64);
  for (let i = 0; i < 20; i++) {
    fill(src, i, 9);
    assert.ok(ring.tryWrite(src, 0, 9));
    assert.equal(ring.usedBytes(), 16);
    assert.equal(ring.read(dst), 9);
    assert.ok(check(dst, i, 9));
  }
});

test('ring - 200k records of varying size pass through in order', () => {
  const ring = new SpscRing(SpscRing.allocate(4096));
  const src = new Uint8Array(600);
  const dst = new Uint8Array(ring.maxRecordBytes);
  const rnd = lcg(7);
  const lens: number[] = [];
  let next = 0;
  for (let i = 0; i < 200_000; i++) {
    const len = rnd() % 600;
    fill(src, i, len);
    if (!ring.tryWrite(src, 0, len)) {
      for (let n = ring.read(dst); n >= 0; n = ring.read(dst)) {
        assert.equal(n, lens[next]);
        if (!check(dst, next, n)) assert.fail(`record ${next} corrupted`);
        next++;
      }
      assert.ok(ring.tryWrite(src, 0, len));
    }
    lens.push(len);
  }
  for (let n = ring.read(dst); n >= 0; n = ring.read(dst)) {
    if (!check(dst, next, n)) assert.fail(`record ${next} corrupted`);
    next++;
  }
  assert.equal(next, 200_000);
});

/** The data bytes of a ring made by SpscRing.allocate (after its 192-byte header). */
function dataBytes(sab: SharedArrayBuffer): Uint8Array {
  return new Uint8Array(sab, 192);
}

test('ring - a rewinding ring keeps its records in its first bytes while the consumer keeps up', () => {
  const sab = SpscRing.allocate(4096);
  const producer = new SpscRing(sab, { rewindAtBytes: 256 });
  const consumer = new SpscRing(sab);
  const src = new Uint8Array(200);
  const dst = new Uint8Array(consumer.maxRecordBytes);
  const rnd = lcg(3);
  for (let i = 0; i < 5000; i++) {
    const len = rnd() % 200;
    fill(src, i, len);
    assert.ok(producer.tryWrite(src, 0, len));
    // Every reader steps over skips: alternate read, readTagged, peekLength + skipTagged.
    if (i % 3 === 0) {
      assert.equal(consumer.read(dst), len);
      assert.ok(check(dst, i, len), `record ${i}`);
    } else if (i % 3 === 1) {
      const tag = consumer.readTagged(dst, 0);
      assert.equal(consumer.lastLength, len);
      if (len >= 4) {
        assert.equal(tag, src[0]);
        for (let k = 4; k < len; k++) assert.equal(dst[k - 4], src[k]);
      }
      consumer.commitReads();
    } else {
      assert.equal(consumer.peekLength(), len);
      consumer.skipTagged();
      consumer.commitReads();
    }
  }
  assert.equal(consumer.read(dst), -1);
  // No record started at or past 256: nothing beyond 256 + the largest record was ever written.
  const data = dataBytes(sab);
  const touched = data.findLastIndex((b) => b !== 0);
  assert.ok(touched < 256 + 4 + 200, `last written byte at ${touched}`);
  assert.ok(producer.highWaterBytes() <= 4 + 200, `high water ${producer.highWaterBytes()} leaves skips out`);
});

test('ring - after a rewind the unread skip holds its space until the consumer passes it', () => {
  const sab = SpscRing.allocate(1024);
  const producer = new SpscRing(sab, { rewindAtBytes: 128 });
  const consumer = new SpscRing(sab);
  const src = new Uint8Array(64);
  const dst = new Uint8Array(consumer.maxRecordBytes);
  // Three 60-byte records (64 bytes each) bring the head to 192, past 128; the consumer drains.
  for (let i = 0; i < 3; i++) assert.ok(producer.tryWrite(src, 0, 60));
  for (let i = 0; i < 3; i++) assert.equal(consumer.read(dst), 60);
  // The next record rewinds: a skip of 1024 - 192 bytes at 192, the record at 0.
  fill(src, 9, 60);
  assert.ok(producer.tryWrite(src, 0, 60));
  assert.equal(consumer.usedBytes(), 1024 - 192 + 64, 'the skip counts as used until read');
  assert.equal(producer.usedAbove(64), false, 'the producer leaves the unread skip out');
  // Room before the skip: 192 - 64 bytes, two more records; the third waits for the consumer.
  assert.ok(producer.tryWrite(src, 0, 60));
  assert.ok(producer.tryWrite(src, 0, 60));
  assert.equal(producer.tryWrite(src, 0, 60), false);
  assert.equal(consumer.read(dst), 60, 'the consumer steps over the skip to the record at 0');
  assert.ok(check(dst, 9, 60));
  assert.ok(producer.tryWrite(src, 0, 60), 'passing the skip freed its space');
  for (let i = 0; i < 3; i++) assert.equal(consumer.read(dst), 60);
  assert.equal(consumer.read(dst), -1);
  // Records never started at or past 192 + one record.
  assert.ok(dataBytes(sab).findLastIndex((b) => b !== 0) < 192 + 64);
});

test('ring - rewindAtBytes must be a multiple of 4 and at least 4', () => {
  const sab = SpscRing.allocate(256);
  assert.throws(() => new SpscRing(sab, { rewindAtBytes: 0 }), /rewindAtBytes/);
  assert.throws(() => new SpscRing(sab, { rewindAtBytes: 6 }), /rewindAtBytes/);
  assert.throws(() => new SpscRing(sab, { rewindAtBytes: 1.5 }), /rewindAtBytes/);
});

test('ring - readTagged strips the 4-byte frame header and releases space in batches until commitReads', () => {
  const sab = SpscRing.allocate(1024);
  const producer = new SpscRing(sab);
  const consumer = new SpscRing(sab);
  const src = new Uint8Array(64);
  for (let i = 0; i < 10; i++) {
    fill(src, i, 30);
    src[0] = (i % 4) + 1;
    assert.ok(producer.tryWrite(src, 0, 30));
  }
  const used = producer.usedBytes();
  const dst = new Uint8Array(100);
  assert.equal(consumer.readTagged(dst, 90), -2, 'no room for 26 payload bytes at offset 90: nothing consumed');
  assert.equal(consumer.lastLength, 30);
  for (let i = 0; i < 3; i++) {
    // Offset 5: unaligned destinations copy too; offset 8: the aligned word path.
    const at = i === 1 ? 8 : 5;
    const tag = consumer.readTagged(dst, at);
    assert.equal(tag, (i % 4) + 1);
    assert.equal(consumer.lastLength, 30);
    const expect = new Uint8Array(30);
    fill(expect, i, 30);
    assert.deepEqual([...dst.subarray(at, at + 26)], [...expect.subarray(4, 30)], `record ${i} payload without its header`);
  }
  assert.equal(producer.usedBytes(), used, 'space is not released record by record');
  consumer.commitReads();
  assert.equal(producer.usedBytes(), used - 3 * 36, "a 30-byte record takes 4 + 32 bytes");
  while (consumer.readTagged(dst, 0) >= 0);
  assert.equal(producer.usedBytes(), 0, 'finding the ring empty releases everything read');
});

test('ring - peekLength and peekByte look at the next record without consuming it', () => {
  const ring = new SpscRing(SpscRing.allocate(256));
  assert.equal(ring.peekLength(), -1);
  const src = Uint8Array.of(9, 8, 7);
  ring.tryWrite(src, 0, 3);
  assert.equal(ring.peekLength(), 3);
  assert.equal(ring.peekByte(0), 9);
  assert.equal(ring.peekByte(2), 7);
  const dst = new Uint8Array(8);
  assert.equal(ring.read(dst, 0, 1), 3, 'read with skip still reports the full record length');
  assert.deepEqual([...dst.subarray(0, 2)], [8, 7]);
});

test('ring - countDrop is visible to the consumer side', () => {
  const sab = SpscRing.allocate(64);
  const producer = new SpscRing(sab);
  const consumer = new SpscRing(sab);
  producer.countDrop();
  producer.countDrop();
  assert.equal(consumer.droppedRecords(), 2);
});

test('ring - writeBlocking gives up after its timeout when nobody reads', () => {
  const ring = new SpscRing(SpscRing.allocate(64));
  const src = new Uint8Array(60);
  assert.ok(ring.tryWrite(src, 0, 60));
  assert.equal(ring.writeBlocking(src, 0, 8, 0), false);
  assert.equal(ring.writeBlocking(src, 0, 8, 5), false);
});

test('doorbell - wait resolves at once when the bell rang after the last wait', async () => {
  const sab = Doorbell.allocate();
  const consumer = new Doorbell(sab);
  const producer = new Doorbell(sab);
  producer.ring();
  // Hang guard only: a lost wake-up would make this wait the full 60 s.
  const started = performance.now();
  await consumer.wait(60_000);
  assert.ok(performance.now() - started < 30_000, 'woke without waiting for the timeout');
});

test('doorbell - wait ends on its timeout when nothing rang', async () => {
  const consumer = new Doorbell(Doorbell.allocate());
  await consumer.wait(1);
});

/** Producer thread: writes `count` records with writeBlocking and rings the bell after each. */
const PRODUCER_SRC = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.ringUrl).then(({ SpscRing, Doorbell }) => {
  const ring = new SpscRing(workerData.ring, workerData.rewindAtBytes === undefined ? {} : { rewindAtBytes: workerData.rewindAtBytes });
  const bell = new Doorbell(workerData.bell);
  const src = new Uint8Array(512);
  let failures = 0;
  for (let i = 0; i < workerData.count; i++) {
    const len = (i * 37) % 300;
    for (let k = 0; k < len; k++) src[k] = (i * 31 + k * 7) & 0xff;
    src[0] = workerData.id;
    if (!ring.writeBlocking(src, 0, Math.max(len, 1), 10000)) failures++;
    bell.ring();
  }
  parentPort.postMessage({ failures });
});
`;

test('ring - two producer threads (one rewinding) and one async consumer exchange 100k records each without loss', async () => {
  const ringUrl = new URL('../../src/protocol/ring.js', import.meta.url).href;
  const bellSab = Doorbell.allocate();
  const bell = new Doorbell(bellSab);
  const count = 100_000;
  const rings = [SpscRing.allocate(1024), SpscRing.allocate(2048)];
  const consumers = rings.map((s) => new SpscRing(s));
  const workers = rings.map(
    (ring, id) => new Worker(PRODUCER_SRC, { eval: true, workerData: { ring, bell: bellSab, ringUrl, count, id, ...(id === 1 ? { rewindAtBytes: 512 } : {}) } }),
  );
  const done = workers.map(
    (w) =>
      new Promise<{ failures: number }>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      }),
  );
  const dst = new Uint8Array(2048);
  const next = [0, 0];
  // A pending Atomics.waitAsync does not keep the event loop alive once the producers exit.
  const keepAlive = setInterval(() => {}, 1000);
  const deadline = performance.now() + 60_000;
  while ((next[0]! < count || next[1]! < count) && performance.now() < deadline) {
    for (let r = 0; r < 2; r++) {
      const ring = consumers[r]!;
      for (let n = ring.read(dst); n >= 0; n = ring.read(dst)) {
        const i = next[r]!;
        const len = Math.max((i * 37) % 300, 1);
        assert.equal(n, len, `ring ${r} record ${i} length`);
        assert.equal(dst[0], r);
        for (let k = 1; k < len; k++) {
          if (dst[k] !== ((i * 31 + k * 7) & 0xff)) assert.fail(`ring ${r} record ${i} byte ${k} corrupted`);
        }
        next[r] = i + 1;
      }
    }
    await bell.wait(1000);
  }
  clearInterval(keepAlive);
  const results = await Promise.all(done);
  assert.deepEqual(results, [{ failures: 0 }, { failures: 0 }]);
  assert.deepEqual(next, [count, count]);
  assert.ok(consumers[0]!.highWaterBytes() <= 1024);
  await Promise.all(workers.map((w) => w.terminate()));
});

test('ring - rings sliced from one SharedArrayBuffer are independent', () => {
  const slices = SpscRing.allocateMany([64, 256, 64]);
  assert.equal(new Set(slices.map((s) => s.sab)).size, 1, 'one SharedArrayBuffer');
  const rings = slices.map((s) => new SpscRing(s));
  assert.deepEqual(rings.map((r) => r.capacity), [64, 256, 64]);
  const dst = new Uint8Array(256);
  for (let i = 0; i < rings.length; i++) assert.ok((rings[i] as SpscRing).tryWrite(Uint8Array.of(i + 1, i + 1, i + 1), 0, 3));
  // Fill the first ring to the brim: its neighbours' records stay intact.
  while ((rings[0] as SpscRing).tryWrite(Uint8Array.of(9, 9, 9, 9), 0, 4));
  for (let i = 2; i >= 0; i--) {
    assert.equal((rings[i] as SpscRing).read(dst), 3);
    assert.deepEqual([...dst.subarray(0, 3)], [i + 1, i + 1, i + 1]);
  }
  assert.throws(() => new SpscRing({ sab: slices[0]!.sab, offset: 8, bytes: 192 + 64 }), RangeError);
});

test('doorbell - a consumer learns exactly which producers rang, each once', () => {
  const sab = Doorbell.allocate(70);
  const consumer = new Doorbell(sab);
  assert.ok(consumer.tracksProducers);
  const out = new Int32Array(70);
  assert.equal(consumer.takeDirty(out), 0);
  for (const p of [69, 3, 31, 32, 3]) new Doorbell(sab, p).ring();
  const n = consumer.takeDirty(out);
  assert.deepEqual([...out.subarray(0, n)], [3, 31, 32, 69], 'ascending, no duplicates');
  assert.equal(consumer.takeDirty(out), 0, 'taking clears the marks');
  consumer.markDirty(5);
  assert.deepEqual([...out.subarray(0, consumer.takeDirty(out))], [5]);
  assert.throws(() => new Doorbell(sab, 96), RangeError, 'a producer outside the bitmap');
  assert.equal(new Doorbell(Doorbell.allocate()).tracksProducers, false);
});

test('doorbell - waitUrgent sleeps through plain rings and ends at once on ringUrgent', async () => {
  const sab = Doorbell.allocate(4);
  const consumer = new Doorbell(sab);
  const producer = new Doorbell(sab, 2);
  // A pending waitAsync does not keep the event loop alive.
  const keepAlive = setInterval(() => undefined, 1000);
  let t = performance.now();
  const plain = setTimeout(() => producer.ring(), 5);
  await consumer.waitUrgent(60);
  clearTimeout(plain);
  assert.ok(performance.now() - t >= 55, 'a plain ring does not end the cadence sleep');
  t = performance.now();
  setTimeout(() => producer.ringUrgent(), 5);
  await consumer.waitUrgent(5000);
  assert.ok(performance.now() - t < 2000, 'a producer with a full ring ends it');
  const dirty = new Int32Array(4);
  assert.equal(consumer.takeDirty(dirty), 1);
  assert.equal(dirty[0], 2, 'both rings marked the producer');
  // An urgent ring before the wait (after the previous one returned) is not lost.
  producer.ringUrgent();
  t = performance.now();
  await consumer.waitUrgent(5000);
  assert.ok(performance.now() - t < 2000);
  clearInterval(keepAlive);
});
