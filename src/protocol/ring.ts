/**
 * Single-producer single-consumer byte ring over a SharedArrayBuffer, plus a doorbell for waking
 * the consumer (reference/node-notes.md §2).
 *
 *   SAB = [ header: 3 cache lines (192 B) | data: capacity bytes ]
 *   line 0, producer-written: HEAD (byte counter, u32, wraps), HIGH_WATER (max bytes used),
 *                             DROPPED (records the producer gave up on, see countDrop)
 *   line 1, consumer-written: TAIL (byte counter, u32, wraps)
 *   line 2, shared:           PRODUCER_WAITING (free bytes the sleeping producer waits for; 0 = no)
 *   Separate lines keep the producer's and the consumer's stores from invalidating each other.
 *
 *   record = [u32 length (native order: both ends are threads of one process) | payload | pad to 4]
 *   skip   = [u32 PAD_FLAG | bytes to the end of the data area]   (a rewind, see below)
 *
 * One producer instance and one consumer instance per ring (any number of observers calling
 * usedBytes/highWaterBytes/droppedRecords). The consumer caches its tail and the last HEAD it
 * saw; readTagged() publishes TAIL every READ_COMMIT_BATCH records (and whenever the ring looks
 * empty, and on commitReads()), so a busy consumer does not bounce TAIL's cache line to the
 * producer on every record. read() publishes TAIL at once. Likewise the producer keeps HEAD (it
 * is the only writer) and the last TAIL it loaded, reloading TAIL only when the cached view says
 * the ring is too full: a write costs one atomic store, not three cross-core loads. Records copy
 * as 32-bit words when source and destination are 4-byte aligned (the common case).
 *
 * Rewinding (producer option `rewindAtBytes`): a ring that is empty when its producer's next
 * record would start at or past rewindAtBytes gets a skip word there instead, and the record
 * goes to the start of the data area. A lightly used ring then cycles through its first few KiB,
 * which stay resident and in cache, instead of through all of its capacity: every first touch of
 * a ring page is a page fault (~14 µs on this VM) and every other lap's line a cache miss. The
 * consumer steps over skips on its own. A skip holds counter space until the consumer passes it
 * (its next read), so right after a rewind a burst has rewindAtBytes, not the whole capacity, of
 * room before the producer must wait; the producer's view of use (high water, usedAbove) leaves
 * an unread skip out.
 *
 * Invariants: capacity is a power of two (so `counter & mask` stays correct across u32 wrap),
 * records start 4-byte aligned (so the length word never straddles the end), used bytes =
 * (head - tail) >>> 0 <= capacity. A payload may straddle the end and is copied in two parts.
 * A record needs 4 + pad4(len) bytes; the largest payload is capacity - 4 (`maxRecordBytes`).
 */

const HEAD = 0;
const HIGH_WATER = 1;
const DROPPED = 2;
const TAIL = 16;
const PRODUCER_WAITING = 32;
const HEADER_BYTES = 192;

/**
 * A tagged record (readTagged) starts with a frame header of this many bytes: the tag, then zero
 * padding, so its payload stays 4-byte aligned and copies out as words.
 */
export const TAG_BYTES = 4;

/** A length word with this bit set is a skip to the end of the data area (its low bits: the bytes skipped). */
const PAD_FLAG = 0x80000000;

/** readTagged() records consumed before TAIL is published. */
const READ_COMMIT_BATCH = 64;

/** Below this size a byte loop beats `set(subarray())`, which allocates a view per call. */
const SMALL_COPY = 48;
/** Up to this many 32-bit words an element loop beats `set(subarray())` (no view allocated). */
const SMALL_WORD_COPY = 512;

type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
/** Node 20 has Atomics.waitAsync; lib es2023 does not declare it. */
const atomicsWaitAsync = (Atomics as unknown as { waitAsync: (a: Int32Array, i: number, v: number, t?: number) => WaitAsyncResult }).waitAsync;

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** A ring in part of a larger SharedArrayBuffer (see SpscRing.allocateMany). */
export interface RingSlice {
  readonly sab: SharedArrayBuffer;
  /** Byte offset of the ring's header (a multiple of 64). */
  readonly offset: number;
  /** Header + data bytes. */
  readonly bytes: number;
}

/** Where a ring lives: a SharedArrayBuffer of its own, or a slice of a shared one. */
export type RingMemory = SharedArrayBuffer | RingSlice;

function checkDataBytes(dataBytes: number, who: string): void {
  if (!Number.isInteger(dataBytes) || !isPowerOfTwo(dataBytes) || dataBytes < 64 || dataBytes > 1 << 30) {
    throw new RangeError(`${who}: dataBytes must be a power of two in [64, 2^30], got ${dataBytes}`);
  }
}

export class SpscRing {
  /** Allocates a ring SAB; dataBytes must be a power of two between 64 B and 1 GiB. */
  static allocate(dataBytes: number): SharedArrayBuffer {
    checkDataBytes(dataBytes, 'SpscRing.allocate');
    return new SharedArrayBuffer(HEADER_BYTES + dataBytes);
  }

  /**
   * Many rings in one SharedArrayBuffer. One large allocation is mapped lazily by the OS, so a
   * ring's pages become resident only as it is used; thousands of small ring SABs instead are
   * each zeroed up front by the allocator (measured: ~0.3 MiB resident per idle rank) and cost
   * ~0.1 ms each to create.
   */
  static allocateMany(dataBytes: readonly number[]): RingSlice[] {
    let total = 0;
    for (const d of dataBytes) {
      checkDataBytes(d, 'SpscRing.allocateMany');
      total += HEADER_BYTES + d;
    }
    const sab = new SharedArrayBuffer(total);
    const out: RingSlice[] = [];
    let offset = 0;
    for (const d of dataBytes) {
      out.push({ sab, offset, bytes: HEADER_BYTES + d });
      offset += HEADER_BYTES + d;
    }
    return out;
  }

  readonly capacity: number;
  /** Largest payload a single record can carry. */
  readonly maxRecordBytes: number;
  /** Length of the record the last readTagged() consumed. */
  lastLength: number;
  private readonly header: Int32Array;
  private readonly data: Uint8Array;
  private readonly data32: Int32Array;
  private readonly mask: number;
  /** Consumer: its tail (published to TAIL on commit) and the last HEAD it loaded. */
  private cTail: number;
  private cHead: number;
  private uncommitted: number;
  /** Producer: its head (published to HEAD per record) and the last TAIL it loaded. */
  private pHead: number;
  private pTail: number;
  /** Producer: rewind at this data offset when the ring is empty (Infinity = never). */
  private readonly rewindAt: number;
  /** Producer: counter of the last skip word and its size (at most one is unread: a rewind needs an empty ring). */
  private padStart: number;
  private padBytes: number;
  /** Int32 view of the last source/destination buffer, for aligned word copies (cached: sources are reused). */
  private wordBuf: ArrayBufferLike | null;
  private wordOff: number;
  private wordLen: number;
  private words: Int32Array | null;

  /**
   * `rewindAtBytes` (producer side only; a multiple of 4, at least 4): rewind to the start of the
   * data area once a record would start this far in and the consumer has read everything.
   */
  constructor(mem: RingMemory, opts: { rewindAtBytes?: number } = {}) {
    const sab = mem instanceof SharedArrayBuffer ? mem : mem.sab;
    const offset = mem instanceof SharedArrayBuffer ? 0 : mem.offset;
    const bytes = mem instanceof SharedArrayBuffer ? mem.byteLength : mem.bytes;
    const capacity = bytes - HEADER_BYTES;
    if (!isPowerOfTwo(capacity) || capacity < 64 || offset % 64 !== 0 || offset + bytes > sab.byteLength) {
      throw new RangeError(`SpscRing: ${bytes} bytes at ${offset} were not made by SpscRing.allocate/allocateMany`);
    }
    this.capacity = capacity;
    this.maxRecordBytes = capacity - 4;
    this.mask = capacity - 1;
    this.lastLength = 0;
    this.header = new Int32Array(sab, offset, HEADER_BYTES / 4);
    this.data = new Uint8Array(sab, offset + HEADER_BYTES, capacity);
    this.data32 = new Int32Array(sab, offset + HEADER_BYTES, capacity >>> 2);
    this.cTail = Atomics.load(this.header, TAIL) >>> 0;
    this.cHead = this.cTail;
    this.uncommitted = 0;
    this.pHead = Atomics.load(this.header, HEAD) >>> 0;
    this.pTail = this.cTail;
    const rewindAt = opts.rewindAtBytes ?? Infinity;
    if (rewindAt !== Infinity && (!Number.isInteger(rewindAt) || rewindAt < 4 || rewindAt % 4 !== 0)) {
      throw new RangeError(`SpscRing: rewindAtBytes must be a multiple of 4 and at least 4, got ${rewindAt}`);
    }
    this.rewindAt = rewindAt;
    this.padStart = 0;
    this.padBytes = 0;
    this.wordBuf = null;
    this.wordOff = 0;
    this.wordLen = 0;
    this.words = null;
  }

  // ---- producer ----

  /** Appends one record; false when there is not enough free space right now. */
  tryWrite(src: Uint8Array, start: number, len: number): boolean {
    if (len < 0 || len > this.maxRecordBytes) {
      throw new RangeError(`SpscRing.tryWrite: record of ${len} bytes exceeds the ring's maximum of ${this.maxRecordBytes}`);
    }
    const h = this.header;
    let head = this.pHead;
    const need = 4 + ((len + 3) & ~3);
    let pos = head & this.mask;
    if (pos >= this.rewindAt && need <= pos) {
      this.pTail = Atomics.load(h, TAIL) >>> 0;
      if (this.pTail === head) {
        // Empty: skip to the start of the data area (published with the record by the HEAD store).
        const pad = this.capacity - pos;
        this.data32[pos >>> 2] = PAD_FLAG | pad;
        this.padStart = head;
        this.padBytes = pad;
        head = (head + pad) >>> 0;
        pos = 0;
      }
    }
    let used = (head - this.pTail) >>> 0;
    if (need > this.capacity - used) {
      this.pTail = Atomics.load(h, TAIL) >>> 0;
      used = (head - this.pTail) >>> 0;
      if (need > this.capacity - used) return false;
    }
    this.data32[pos >>> 2] = len;
    const p = (pos + 4) & this.mask;
    const first = Math.min(len, this.capacity - p);
    this.copyIn(src, start, p, first);
    if (first < len) this.copyIn(src, start + first, 0, len - first);
    this.pHead = (head + need) >>> 0;
    Atomics.store(h, HEAD, this.pHead | 0);
    // The cached TAIL may be stale (overstating use): check a new high-water mark against a fresh one.
    if (this.recordBytesAfter(this.pTail) > h[HIGH_WATER]!) {
      this.pTail = Atomics.load(h, TAIL) >>> 0;
      const nowUsed = this.recordBytesAfter(this.pTail);
      if (nowUsed > h[HIGH_WATER]!) Atomics.store(h, HIGH_WATER, nowUsed);
    }
    return true;
  }

  /** Producer: bytes between `tail` and the head, less the last skip if the consumer has not passed it. */
  private recordBytesAfter(tail: number): number {
    const used = (this.pHead - tail) >>> 0;
    // Unread iff it starts at or after tail (within one capacity: counters wrap at 2^32).
    return this.padBytes > 0 && ((this.padStart - tail) >>> 0) < used ? used - this.padBytes : used;
  }

  /**
   * Producer: whether more than `bytes` are in use. Reloads TAIL only when the cached view says
   * so, so it is cheap while the consumer keeps up.
   */
  usedAbove(bytes: number): boolean {
    if (this.recordBytesAfter(this.pTail) <= bytes) return false;
    this.pTail = Atomics.load(this.header, TAIL) >>> 0;
    return this.recordBytesAfter(this.pTail) > bytes;
  }

  /**
   * Like tryWrite, but sleeps (Atomics.wait, worker threads only) until the consumer frees space
   * or timeoutMs passes. False on timeout; the caller decides whether that is a drop.
   */
  writeBlocking(src: Uint8Array, start: number, len: number, timeoutMs: number): boolean {
    if (this.tryWrite(src, start, len)) return true;
    const h = this.header;
    const deadline = performance.now() + timeoutMs;
    // Ask to be woken only once a quarter of the ring is free: one wake-up per batch of
    // records instead of a futex wake per record the consumer frees.
    const want = Math.max(4 + ((len + 3) & ~3), this.capacity >>> 2);
    for (;;) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) return false;
      // Dekker with read(): publish "waiting" before re-reading TAIL, the consumer stores TAIL
      // before reading "waiting", so one of us sees the other and no wake-up is lost.
      Atomics.store(h, PRODUCER_WAITING, want);
      const tail = Atomics.load(h, TAIL);
      if (this.tryWrite(src, start, len)) {
        Atomics.store(h, PRODUCER_WAITING, 0);
        return true;
      }
      Atomics.wait(h, TAIL, tail, remaining);
      Atomics.store(h, PRODUCER_WAITING, 0);
      if (this.tryWrite(src, start, len)) return true;
    }
  }

  /** Records a record the producer gave up on, so the consumer side can report it. */
  countDrop(): void {
    Atomics.add(this.header, DROPPED, 1);
  }

  // ---- consumer ----

  /**
   * True when the consumer has a record to read; reloads HEAD only when the cache is drained.
   * Steps over skip words (a rewinding producer's), leaving cTail at a record.
   */
  private hasRecord(): boolean {
    for (;;) {
      if (this.cTail === this.cHead) {
        this.cHead = Atomics.load(this.header, HEAD) >>> 0;
        if (this.cTail === this.cHead) return false;
      }
      const word = this.data32[(this.cTail & this.mask) >>> 2]!;
      if ((word & PAD_FLAG) === 0) return true;
      this.cTail = (this.cTail + (word & ~PAD_FLAG)) >>> 0;
      this.uncommitted++;
    }
  }

  /** Length of the next record, or -1 when the ring is empty. Does not consume. */
  peekLength(): number {
    if (!this.hasRecord()) return -1;
    return this.data32[(this.cTail & this.mask) >>> 2]! >>> 0;
  }

  /** Byte i of the next record (the caller checked peekLength() > i). Does not consume. */
  peekByte(i: number): number {
    return this.data[(this.cTail + 4 + i) & this.mask]!;
  }

  /**
   * Copies the next record, minus its first `skip` bytes, into dst at dstOffset (dst must have
   * room: size it with maxRecordBytes), releases its space, wakes a producer waiting for that
   * much room. Returns the full record length, or -1 when the ring is empty.
   */
  read(dst: Uint8Array, dstOffset = 0, skip = 0): number {
    if (!this.hasRecord()) {
      this.commitReads();
      return -1;
    }
    const pos = this.cTail & this.mask;
    const len = this.data32[pos >>> 2]! >>> 0;
    const n = len - skip;
    if (n < 0 || dst.length - dstOffset < n) {
      throw new RangeError(`SpscRing.read: destination has ${dst.length - dstOffset} bytes, record needs ${n}`);
    }
    const p = (pos + 4 + skip) & this.mask;
    const first = Math.min(n, this.capacity - p);
    this.copyOut(p, dst, dstOffset, first);
    if (first < n) this.copyOut(0, dst, dstOffset + first, n - first);
    this.cTail = (this.cTail + 4 + ((len + 3) & ~3)) >>> 0;
    this.uncommitted++;
    this.commitReads();
    return len;
  }

  /**
   * Consumer fast path for framed records: copies the next record minus its TAG_BYTES frame
   * header into dst at dstOffset and returns the tag (the header's first byte), or -1 when the
   * ring is empty. The record length is left in `lastLength`. Returns -2, consuming nothing, when
   * dst has no room for the lastLength - TAG_BYTES payload bytes. A record shorter than the
   * header returns tag 0. Space is released in batches: call commitReads()
   * when stopping before the ring is empty.
   */
  readTagged(dst: Uint8Array, dstOffset: number): number {
    const len = this.nextLength();
    if (len < 0) return -1;
    const pos = this.cTail & this.mask;
    let tag = 0;
    if (len >= TAG_BYTES) {
      const n = len - TAG_BYTES;
      if (dst.length - dstOffset < n) return -2;
      tag = this.data[(pos + 4) & this.mask]!;
      const p = (pos + 4 + TAG_BYTES) & this.mask;
      const first = Math.min(n, this.capacity - p);
      this.copyOut(p, dst, dstOffset, first);
      if (first < n) this.copyOut(0, dst, dstOffset + first, n - first);
    }
    this.consume(len);
    return tag;
  }

  /**
   * Like readTagged, but consumes the next record without copying it: returns its tag (or -1
   * when the ring is empty) and leaves its length in `lastLength`.
   */
  skipTagged(): number {
    const len = this.nextLength();
    if (len < 0) return -1;
    const pos = this.cTail & this.mask;
    const tag = len >= TAG_BYTES ? this.data[(pos + 4) & this.mask]! : 0;
    this.consume(len);
    return tag;
  }

  /**
   * Consumer: the payload length of the next record (also left in `lastLength`), or -1 when the
   * ring is empty (read space is then released).
   */
  private nextLength(): number {
    const len = this.peekLength();
    if (len < 0) this.commitReads();
    else this.lastLength = len;
    return len;
  }

  /** Consumer: step over a record of `len` payload bytes; its space is released with the next batch. */
  private consume(len: number): void {
    this.cTail = (this.cTail + 4 + ((len + 3) & ~3)) >>> 0;
    if (++this.uncommitted >= READ_COMMIT_BATCH) this.commitReads();
  }

  /** Consumer: publishes the consumed space to the producer and wakes it if it waits for it. */
  commitReads(): void {
    if (this.uncommitted === 0) return;
    this.uncommitted = 0;
    const h = this.header;
    Atomics.store(h, TAIL, this.cTail | 0);
    const want = Atomics.load(h, PRODUCER_WAITING);
    if (want !== 0 && this.capacity - ((Atomics.load(h, HEAD) - this.cTail) >>> 0) >= want) {
      Atomics.store(h, PRODUCER_WAITING, 0);
      Atomics.notify(h, TAIL);
    }
  }

  /** Bytes in use, counting an unread skip (a rewinding producer's) as used. */
  usedBytes(): number {
    return (Atomics.load(this.header, HEAD) - Atomics.load(this.header, TAIL)) >>> 0;
  }

  highWaterBytes(): number {
    return Atomics.load(this.header, HIGH_WATER);
  }

  /** Records the producer dropped (countDrop) since the ring was allocated. */
  droppedRecords(): number {
    return Atomics.load(this.header, DROPPED) >>> 0;
  }

  /** Int32 view of `buf` when its bytes start 4-byte aligned, else null (cached for the last buffer seen). */
  private wordsOf(buf: Uint8Array): Int32Array | null {
    if (buf.buffer !== this.wordBuf || buf.byteOffset !== this.wordOff || buf.byteLength !== this.wordLen) {
      this.wordBuf = buf.buffer;
      this.wordOff = buf.byteOffset;
      this.wordLen = buf.byteLength;
      this.words = (buf.byteOffset & 3) === 0 ? new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2) : null;
    }
    return this.words;
  }

  /** `to` is 4-byte aligned (a payload start or the ring's start); the ring's padding absorbs a partial last word. */
  private copyIn(src: Uint8Array, from: number, to: number, n: number): void {
    const nw = (n + 3) >>> 2;
    if ((from & 3) === 0 && from + 4 * nw <= src.length) {
      const s32 = this.wordsOf(src);
      if (s32 !== null) {
        const d32 = this.data32;
        const f = from >>> 2;
        const t = to >>> 2;
        if (nw <= SMALL_WORD_COPY) {
          for (let i = 0; i < nw; i++) d32[t + i] = s32[f + i]!;
        } else {
          d32.set(s32.subarray(f, f + nw), t);
        }
        return;
      }
    }
    const d = this.data;
    if (n <= SMALL_COPY) {
      for (let i = 0; i < n; i++) d[to + i] = src[from + i]!;
    } else {
      d.set(src.subarray(from, from + n), to);
    }
  }

  /** `from` is 4-byte aligned; with `to` aligned too, whole words copy as words, the rest as bytes. */
  private copyOut(from: number, dst: Uint8Array, to: number, n: number): void {
    const d = this.data;
    if (((from | to) & 3) === 0 && n >= 16) {
      const d32 = this.wordsOf(dst);
      if (d32 !== null) {
        const s32 = this.data32;
        const f = from >>> 2;
        const t = to >>> 2;
        const nw = n >>> 2;
        if (nw <= SMALL_WORD_COPY) {
          for (let i = 0; i < nw; i++) d32[t + i] = s32[f + i]!;
        } else {
          d32.set(s32.subarray(f, f + nw), t);
        }
        for (let i = nw << 2; i < n; i++) dst[to + i] = d[from + i]!;
        return;
      }
    }
    if (n <= SMALL_COPY) {
      for (let i = 0; i < n; i++) dst[to + i] = d[from + i]!;
    } else {
      dst.set(d.subarray(from, from + n), to);
    }
  }
}

const BELL_COUNTER = 0;
const BELL_WAITING = 1;
/** Counter of ringUrgent() calls (a producer that found its ring full); see waitUrgent(). */
const BELL_URGENT = 2;
/** Int32 index of the first word of the producers' dirty bitmap. */
const BELL_BITS = 3;

/**
 * Wakes one consumer that serves many producers (Int32 [counter, consumerWaiting, urgentCounter],
 * then an optional bitmap with one bit per producer).
 *
 * Producer: write the record (HEAD store), then ring(). ring() marks the producer's bit (when
 * the bell has a bitmap and the producer gave its index), always bumps the counter and notifies
 * only when the consumer said it is waiting (clearing that flag, so several producers ringing at
 * once cost one wake-up).
 * Consumer: loop { drain the rings takeDirty() names (or every ring); await wait(timeoutMs) }.
 * wait() compares the counter with the value seen when the previous wait() returned (or at
 * construction / arm()): any record written after that point changed the counter, so the wait
 * returns at once; any record written before it was visible to the drain that followed. A bit is
 * set after its record is written and cleared (exchange) before the consumer drains that ring,
 * so a record is either drained now or re-marks the bit. Nothing is lost, a quiet consumer costs
 * the producers one atomic add per ring(), and a drain costs O(producers that rang), not
 * O(producers): what makes 4096 mostly idle ranks cheap.
 *
 * A consumer that drains on its own cadence while busy (the publisher) sleeps in waitUrgent(),
 * which only ringUrgent() ends early: a producer whose ring is full and that is about to block.
 *
 * A pending Atomics.waitAsync does not keep the Node event loop alive: the consumer's thread
 * needs another live handle (a MessagePort listener, a socket, a server).
 */
export class Doorbell {
  /** A bell; with producers > 0 it also tracks which of that many producers rang. */
  static allocate(producers = 0): SharedArrayBuffer {
    return new SharedArrayBuffer(4 * (BELL_BITS + Math.ceil(producers / 32)));
  }

  private readonly cell: Int32Array;
  private seen: number;
  /** Bitmap words (0 when the bell has none). */
  private readonly words: number;
  private readonly bitWord: number;
  private readonly bitMask: number;

  /** producer: this instance's index in the bitmap (rings mark it), or -1 (a consumer, or no bitmap). */
  constructor(sab: SharedArrayBuffer, producer = -1) {
    if (sab.byteLength < 4 * BELL_BITS) throw new RangeError(`Doorbell: SAB must be at least ${4 * BELL_BITS} bytes (use Doorbell.allocate)`);
    this.cell = new Int32Array(sab);
    this.words = this.cell.length - BELL_BITS;
    if (producer >= 0 && producer >= this.words * 32) {
      throw new RangeError(`Doorbell: producer ${producer} outside the bell's bitmap of ${this.words * 32}`);
    }
    this.bitWord = producer < 0 ? -1 : BELL_BITS + (producer >>> 5);
    this.bitMask = producer < 0 ? 0 : 1 << (producer & 31);
    this.seen = Atomics.load(this.cell, BELL_COUNTER);
    this.urgentSeen = Atomics.load(this.cell, BELL_URGENT);
  }

  private urgentSeen: number;

  /** Producer about to block on a full ring: mark, signal, and end a waitUrgent() at once. */
  ringUrgent(): void {
    this.ring();
    Atomics.add(this.cell, BELL_URGENT, 1);
    Atomics.notify(this.cell, BELL_URGENT);
  }

  /**
   * Consumer: sleep timeoutMs unless a ringUrgent() came (since the last waitUrgent() returned, or
   * construction) or comes meanwhile. Plain rings do not end it and are not woken for.
   */
  async waitUrgent(timeoutMs: number): Promise<void> {
    const c = this.cell;
    const r = atomicsWaitAsync(c, BELL_URGENT, this.urgentSeen, timeoutMs);
    if (r.async) await r.value;
    this.urgentSeen = Atomics.load(c, BELL_URGENT);
  }

  /** Whether the bell tracks producers (takeDirty is meaningful). */
  get tracksProducers(): boolean {
    return this.words > 0;
  }

  /** Mark producer i dirty without ringing (a consumer re-queues a ring it did not finish). */
  markDirty(i: number): void {
    Atomics.or(this.cell, BELL_BITS + (i >>> 5), 1 << (i & 31));
  }

  /**
   * Consumer: the producers that rang since the last call, in ascending order, written to out
   * (sized to the number of producers); returns how many. Clears their bits.
   */
  takeDirty(out: Int32Array): number {
    const c = this.cell;
    let n = 0;
    for (let w = 0; w < this.words; w++) {
      if (c[BELL_BITS + w] === 0) continue;
      let bits = Atomics.exchange(c, BELL_BITS + w, 0);
      while (bits !== 0) {
        const low = bits & -bits;
        out[n++] = (w << 5) + 31 - Math.clz32(low);
        bits ^= low;
      }
    }
    return n;
  }

  /** Producer, after a write. Only the first ring after the consumer went to sleep notifies. */
  ring(): void {
    this.mark();
    this.signal();
  }

  /**
   * Producer, after a write: mark this producer's bit without waking the consumer. The write is
   * drained on the consumer's next wake-up (any signal(), or its wait timeout). A thread writing
   * for several producers marks per write and signals once (see rank-worker's service round).
   */
  mark(): void {
    const c = this.cell;
    if (this.bitWord >= 0 && (Atomics.load(c, this.bitWord) & this.bitMask) === 0) Atomics.or(c, this.bitWord, this.bitMask);
  }

  /** Wake the consumer for everything marked (or written) before this call. Any instance may signal. */
  signal(): void {
    const c = this.cell;
    Atomics.add(c, BELL_COUNTER, 1);
    if (Atomics.load(c, BELL_WAITING) !== 0 && Atomics.exchange(c, BELL_WAITING, 0) !== 0) Atomics.notify(c, BELL_COUNTER);
  }

  /** Consumer: remember the counter now; the next wait() returns at once if it moves. */
  arm(): void {
    this.seen = Atomics.load(this.cell, BELL_COUNTER);
  }

  /**
   * Consumer: resolves when a producer rang after the last arm()/wait(), or after timeoutMs.
   * Re-arms before resolving, so a drain that follows sees everything rung before it.
   */
  async wait(timeoutMs: number): Promise<void> {
    const c = this.cell;
    Atomics.store(c, BELL_WAITING, 1);
    const r = atomicsWaitAsync(c, BELL_COUNTER, this.seen, timeoutMs);
    if (r.async) await r.value;
    Atomics.store(c, BELL_WAITING, 0);
    this.seen = Atomics.load(c, BELL_COUNTER);
  }

  /** Consumer on a worker thread that may block: same contract as wait(). */
  waitSync(timeoutMs: number): void {
    const c = this.cell;
    Atomics.store(c, BELL_WAITING, 1);
    Atomics.wait(c, BELL_COUNTER, this.seen, timeoutMs);
    Atomics.store(c, BELL_WAITING, 0);
    this.seen = Atomics.load(c, BELL_COUNTER);
  }
}
