import { KvEventKind } from './types.js';
import type { KvEventLog } from './types.js';

/**
 * One buffer of KV events as parallel typed arrays (layout documented on KvEventLog). Arrays grow
 * by doubling when a burst outgrows them; a caller that drains every pass reaches a steady size
 * after warm-up and nothing is allocated afterwards.
 */
export class KvEventBuffer implements KvEventLog {
  count = 0;
  firstEventId = 0;
  readonly blockSize: number;
  kind: Uint8Array;
  hasParent: Uint8Array;
  parentHi: Uint32Array;
  parentLo: Uint32Array;
  hashStart: Int32Array;
  hashCount: Int32Array;
  tokenStart: Int32Array;
  seqHashHi: Uint32Array;
  seqHashLo: Uint32Array;
  tokHashHi: Uint32Array;
  tokHashLo: Uint32Array;
  tokens: Uint32Array;
  /** Used entries of the per-block arrays and of tokens. */
  numHashes = 0;
  numTokens = 0;

  /** Whether addStored copies token ids (EngineOptions.recordEventTokens). */
  private readonly withTokens: boolean;
  /** False: the add methods record nothing (EngineOptions.recordKvEvents). */
  private readonly enabled: boolean;

  constructor(blockSize: number, withTokens = true, enabled = true) {
    this.blockSize = blockSize;
    this.withTokens = withTokens;
    this.enabled = enabled;
    // Small at first, doubled on demand: an idle rank should not hold a pass's worth of tokens.
    const ev = 16;
    const hs = 16;
    this.kind = new Uint8Array(ev);
    this.hasParent = new Uint8Array(ev);
    this.parentHi = new Uint32Array(ev);
    this.parentLo = new Uint32Array(ev);
    this.hashStart = new Int32Array(ev);
    this.hashCount = new Int32Array(ev);
    this.tokenStart = new Int32Array(ev);
    this.seqHashHi = new Uint32Array(hs);
    this.seqHashLo = new Uint32Array(hs);
    this.tokHashHi = new Uint32Array(hs);
    this.tokHashLo = new Uint32Array(hs);
    this.tokens = new Uint32Array(withTokens ? hs * blockSize : 0);
  }

  reset(firstEventId: number): void {
    this.count = 0;
    this.firstEventId = firstEventId;
    this.numHashes = 0;
    this.numTokens = 0;
  }

  private growEvents(): void {
    const n = this.kind.length * 2;
    this.kind = growU8(this.kind, n);
    this.hasParent = growU8(this.hasParent, n);
    this.parentHi = growU32(this.parentHi, n);
    this.parentLo = growU32(this.parentLo, n);
    this.hashStart = growI32(this.hashStart, n);
    this.hashCount = growI32(this.hashCount, n);
    this.tokenStart = growI32(this.tokenStart, n);
  }

  private ensureHashes(extra: number): void {
    let n = this.seqHashHi.length;
    if (this.numHashes + extra <= n) return;
    while (n < this.numHashes + extra) n *= 2;
    this.seqHashHi = growU32(this.seqHashHi, n);
    this.seqHashLo = growU32(this.seqHashLo, n);
    this.tokHashHi = growU32(this.tokHashHi, n);
    this.tokHashLo = growU32(this.tokHashLo, n);
  }

  private ensureTokens(extra: number): void {
    let n = this.tokens.length;
    if (this.numTokens + extra <= n) return;
    while (n < this.numTokens + extra) n *= 2;
    this.tokens = growU32(this.tokens, n);
  }

  private open(kind: number): number {
    if (this.count === this.kind.length) this.growEvents();
    const e = this.count++;
    this.kind[e] = kind;
    this.hasParent[e] = 0;
    this.parentHi[e] = 0;
    this.parentLo[e] = 0;
    this.hashStart[e] = this.numHashes;
    this.hashCount[e] = 0;
    this.tokenStart[e] = this.numTokens;
    return e;
  }

  /**
   * Stored event for `n` consecutive blocks of one sequence: sequence hashes seqHi/seqLo[from..],
   * tokens hashes tokHi/tokLo[from..], token ids tokens[from × blockSize ..].
   * parentIndex = from - 1 when the first block has a parent (its hash is read from the same arrays).
   */
  addStored(
    seqHi: Uint32Array,
    seqLo: Uint32Array,
    tokHi: Uint32Array,
    tokLo: Uint32Array,
    tokens: Uint32Array,
    from: number,
    n: number,
  ): void {
    if (!this.enabled) return;
    const e = this.open(KvEventKind.stored);
    if (from > 0) {
      this.hasParent[e] = 1;
      this.parentHi[e] = seqHi[from - 1] as number;
      this.parentLo[e] = seqLo[from - 1] as number;
    }
    this.ensureHashes(n);
    const h = this.numHashes;
    for (let j = 0; j < n; j++) {
      this.seqHashHi[h + j] = seqHi[from + j] as number;
      this.seqHashLo[h + j] = seqLo[from + j] as number;
      this.tokHashHi[h + j] = tokHi[from + j] as number;
      this.tokHashLo[h + j] = tokLo[from + j] as number;
    }
    this.numHashes = h + n;
    this.hashCount[e] = n;
    if (!this.withTokens) return;
    const bs = this.blockSize;
    const len = n * bs;
    this.ensureTokens(len);
    const out = this.tokens;
    const src = from * bs;
    const dst = this.numTokens;
    for (let t = 0; t < len; t++) out[dst + t] = tokens[src + t] as number;
    this.numTokens = dst + len;
  }

  /** Removed event for one block. */
  addRemoved(hi: number, lo: number): void {
    if (!this.enabled) return;
    const e = this.open(KvEventKind.removed);
    this.ensureHashes(1);
    const h = this.numHashes++;
    this.seqHashHi[h] = hi;
    this.seqHashLo[h] = lo;
    this.tokHashHi[h] = 0;
    this.tokHashLo[h] = 0;
    this.hashCount[e] = 1;
  }

  addCleared(): void {
    if (!this.enabled) return;
    this.open(KvEventKind.cleared);
  }
}

function growU8(a: Uint8Array, n: number): Uint8Array {
  const b = new Uint8Array(n);
  b.set(a);
  return b;
}
function growU32(a: Uint32Array, n: number): Uint32Array {
  const b = new Uint32Array(n);
  b.set(a);
  return b;
}
function growI32(a: Int32Array, n: number): Int32Array {
  const b = new Int32Array(n);
  b.set(a);
  return b;
}

/**
 * Double-buffered event recorder: the engine appends to `active`; takeEvents() hands `active` to
 * the caller and starts appending to the other buffer (vLLM `take_events`). event_id runs from 0
 * and increases by 1 per event for the life of the engine.
 */
export class KvEventRecorder {
  active: KvEventBuffer;
  private spare: KvEventBuffer;
  /** Whether events are recorded at all (false: every add is a no-op, callers may skip their arguments). */
  readonly enabled: boolean;

  constructor(blockSize: number, withTokens = true, enabled = true) {
    this.enabled = enabled;
    this.active = new KvEventBuffer(blockSize, withTokens, enabled);
    this.spare = new KvEventBuffer(blockSize, withTokens, enabled);
  }

  take(): KvEventLog {
    const out = this.active;
    this.active = this.spare;
    this.spare = out;
    this.active.reset(out.firstEventId + out.count);
    return out;
  }
}
