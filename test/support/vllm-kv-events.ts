/**
 * A strict consumer of vLLM KV event batches, written from vLLM's struct definitions
 * (vllm-project/vllm vllm/distributed/kv_events.py, >= 0.24):
 *
 *   class EventBatch(msgspec.Struct, array_like=True, omit_defaults=True):
 *       ts: float; events: list; data_parallel_rank: int | None = None
 *   class KVCacheEvent(msgspec.Struct, omit_defaults=True, tag=True)          # map, "type" tag
 *   class BlockStored(KVCacheEvent):
 *       block_hashes: list[int]; parent_block_hash: int | None; token_ids: list[int];
 *       block_size: int; lora_id: int | None; medium: str | None; lora_name: str | None;
 *       extra_keys: list[tuple | None] | None = None; group_idx: int | None = None;
 *       kv_cache_spec_kind: str | None = None; kv_cache_spec_sliding_window: int | None = None;
 *       locality: str | None = None
 *   class BlockRemoved(KVCacheEvent):
 *       block_hashes: list[int]; medium: str | None; group_idx: int | None = None; locality = None
 *   class AllBlocksCleared(KVCacheEvent): pass
 *
 * msgspec writes the tag first, then the fields in declaration order, leaving out fields equal
 * to their default. Anything else — an unknown key, a missing required field, a wrong order or
 * type, a non-positional batch — throws.
 */
import { Unpackr } from 'msgpackr';

const unpackr = new Unpackr({ int64AsType: 'bigint', useRecords: false, mapsAsObjects: true });

export type VllmEvent =
  | { type: 'BlockStored'; block_hashes: bigint[]; parent_block_hash: bigint | null; token_ids: number[]; block_size: number; lora_id: number | null; medium: string | null; lora_name: string | null; extra_keys?: unknown[] | null; group_idx?: number | null; kv_cache_spec_kind?: string | null }
  | { type: 'BlockRemoved'; block_hashes: bigint[]; medium: string | null; group_idx?: number | null }
  | { type: 'AllBlocksCleared' };

export interface VllmBatch {
  ts: number;
  events: VllmEvent[];
  dataParallelRank: number | null;
}

interface FieldDef {
  name: string;
  required: boolean;
  check: (v: unknown) => boolean;
}

const isInt = (v: unknown): boolean => (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint';
const isHash = (v: unknown): boolean => isInt(v);
const nullable = (f: (v: unknown) => boolean) => (v: unknown): boolean => v === null || f(v);
const listOf = (f: (v: unknown) => boolean) => (v: unknown): boolean => Array.isArray(v) && v.every(f);
const isStr = (v: unknown): boolean => typeof v === 'string';

const STRUCTS: Record<string, FieldDef[]> = {
  BlockStored: [
    { name: 'block_hashes', required: true, check: listOf(isHash) },
    { name: 'parent_block_hash', required: true, check: nullable(isHash) },
    { name: 'token_ids', required: true, check: listOf(isInt) },
    { name: 'block_size', required: true, check: isInt },
    { name: 'lora_id', required: true, check: nullable(isInt) },
    { name: 'medium', required: true, check: nullable(isStr) },
    { name: 'lora_name', required: true, check: nullable(isStr) },
    { name: 'extra_keys', required: false, check: listOf((e) => e === null || Array.isArray(e)) },
    { name: 'group_idx', required: false, check: isInt },
    { name: 'kv_cache_spec_kind', required: false, check: isStr },
    { name: 'kv_cache_spec_sliding_window', required: false, check: isInt },
    { name: 'locality', required: false, check: isStr },
  ],
  BlockRemoved: [
    { name: 'block_hashes', required: true, check: listOf(isHash) },
    { name: 'medium', required: true, check: nullable(isStr) },
    { name: 'group_idx', required: false, check: isInt },
    { name: 'locality', required: false, check: isStr },
  ],
  AllBlocksCleared: [],
};

function decodeEvent(e: unknown, where: string): VllmEvent {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) throw new Error(`${where}: event is not a map (vLLM >= 0.24 encodes tagged maps): ${String(e)}`);
  const keys = Object.keys(e);
  if (keys[0] !== 'type') throw new Error(`${where}: the "type" tag must come first, keys ${keys.join(',')}`);
  const tag = (e as Record<string, unknown>)['type'];
  const defs = STRUCTS[String(tag)];
  if (defs === undefined) throw new Error(`${where}: unknown event type ${String(tag)}`);
  let d = 0;
  for (const k of keys.slice(1)) {
    while (d < defs.length && defs[d]!.name !== k) {
      if (defs[d]!.required) throw new Error(`${where}: ${String(tag)} is missing required field ${defs[d]!.name} (or fields are out of order: ${keys.join(',')})`);
      d++;
    }
    if (d === defs.length) throw new Error(`${where}: ${String(tag)} has unknown or misplaced field "${k}" (keys ${keys.join(',')})`);
    if (!defs[d]!.check((e as Record<string, unknown>)[k])) throw new Error(`${where}: ${String(tag)}.${k} has the wrong type: ${String((e as Record<string, unknown>)[k])}`);
    d++;
  }
  for (; d < defs.length; d++) if (defs[d]!.required) throw new Error(`${where}: ${String(tag)} is missing required field ${defs[d]!.name}`);
  return e as VllmEvent;
}

/** Decodes one KVEventBatch payload; throws on anything vLLM's structs would not produce. */
export function decodeVllmBatch(payload: Uint8Array, where = 'batch'): VllmBatch {
  const b: unknown = unpackr.unpack(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
  if (!Array.isArray(b)) throw new Error(`${where}: KVEventBatch must be positional (array_like), got ${typeof b}`);
  if (b.length < 2 || b.length > 3) throw new Error(`${where}: KVEventBatch has ${b.length} fields, expected [ts, events, data_parallel_rank?]`);
  const [ts, events, dp] = b as [unknown, unknown, unknown];
  if (typeof ts !== 'number') throw new Error(`${where}: ts must be a float, got ${typeof ts}`);
  if (!Array.isArray(events)) throw new Error(`${where}: events must be a list`);
  if (b.length === 3 && !isInt(dp)) throw new Error(`${where}: data_parallel_rank must be an int, got ${String(dp)}`);
  return { ts, events: events.map((e, i) => decodeEvent(e, `${where} event ${i}`)), dataParallelRank: b.length === 3 ? Number(dp) : null };
}

/** 8-byte big-endian unsigned seq frame -> bigint (vLLM: int.from_bytes(seq, "big")). */
export function seqOf(frame: Uint8Array): bigint {
  if (frame.length !== 8) throw new Error(`seq frame must be 8 bytes, got ${frame.length}`);
  return Buffer.from(frame).readBigUInt64BE(0);
}
