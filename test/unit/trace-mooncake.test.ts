import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  computeTraceStats,
  parseMooncakeTrace,
  readMooncakeTrace,
  synthesizePromptTokens,
} from '../../src/trace/mooncake.js';
import type { TraceRequest } from '../../src/trace/mooncake.js';
import { TraceFormatError } from '../../src/util/errors.js';

const DATA = new URL('../../../data/mooncake/', import.meta.url);

function req(hashIds: number[], inputLength: number, timestampMs = 0, outputLength = 1): TraceRequest {
  return { timestampMs, inputLength, outputLength, hashIds: Uint32Array.from(hashIds), sessionId: null, delayMs: null, line: 1 };
}

test('trace-mooncake - conversation_trace.jsonl has the published request count and mean lengths', async () => {
  const reqs = await readMooncakeTrace(new URL('conversation_trace.jsonl', DATA).pathname);
  const s = computeTraceStats(reqs, 512);
  assert.equal(s.requests, 12031);
  assert.equal(Math.round(s.input.mean), 12035);
  assert.equal(Math.round(s.output.mean), 343);
  assert.equal(s.input.median, 6909);
  assert.equal(s.input.min, 891);
  assert.equal(s.input.max, 126195);
  assert.equal(s.output.median, 350);
  assert.equal(s.spanMs, 3536999);
  assert.ok(s.idealPrefixReuseRatio > 0 && s.idealPrefixReuseRatio < 1);
});

test('trace-mooncake - synthetic_trace.jsonl has the published request count and mean lengths', async () => {
  const reqs = await readMooncakeTrace(new URL('synthetic_trace.jsonl', DATA).pathname);
  const s = computeTraceStats(reqs, 512);
  assert.equal(s.requests, 3993);
  assert.equal(Math.round(s.input.mean), 15325);
  assert.equal(Math.round(s.output.mean), 149);
  assert.equal(s.input.median, 11587);
  assert.equal(s.input.min, 13);
  assert.equal(s.input.max, 191378);
  assert.equal(s.output.max, 893);
  assert.equal(s.spanMs, 1022025);
});

test('trace-mooncake - synthesis repeats each hash id block-size times and truncates to the input length', () => {
  assert.deepEqual(Array.from(synthesizePromptTokens(req([7, 9, 4], 7), 3)), [7, 7, 7, 9, 9, 9, 4]);
  // input_length beyond len(hash_ids) x block size is clamped
  assert.deepEqual(Array.from(synthesizePromptTokens(req([1, 2], 100), 2)), [1, 1, 2, 2]);
  assert.deepEqual(Array.from(synthesizePromptTokens(req([5, 6], 2), 4)), [5, 5]);
  assert.throws(() => synthesizePromptTokens(req([1], 1), 0), RangeError);
});

test('trace-mooncake - aliases, blank lines, sessions and delays follow the Dynamo parsing rules', () => {
  const text = [
    '{"created_time": 10, "input_tokens": 5, "output_tokens": 2, "hash_ids": [1, 2], "session_id": "a"}',
    '',
    '   ',
    '{"timestamp": 25, "input_length": 9, "output_length": 3, "hash_ids": [1, 2, 3], "session_id": "a"}',
    '{"input_length": 4, "output_length": 1, "hash_ids": [1], "session_id": "a", "delay_ms": 100}',
    '{"timestamp": 30, "input_length": 4, "output_length": 1, "hash_ids": [4294967297], "session_id": 17}',
  ].join('\n');
  const reqs = parseMooncakeTrace(text, 't.jsonl');
  assert.equal(reqs.length, 4);
  assert.deepEqual(reqs.map((r) => r.line), [1, 4, 5, 6]);
  assert.deepEqual(reqs.map((r) => r.timestampMs), [10, 25, 125, 30]);
  assert.deepEqual(reqs.map((r) => r.delayMs), [null, 15, 100, null]);
  assert.deepEqual(reqs.map((r) => r.sessionId), ['a', 'a', 'a', '17']);
  assert.equal(reqs[0]!.inputLength, 5);
  assert.equal(reqs[0]!.outputLength, 2);
  assert.equal(reqs[3]!.hashIds[0], 1, 'u64 ids keep their low 32 bits like `as u32`');
});

function expectTraceError(text: string, expected: string): void {
  assert.throws(
    () => parseMooncakeTrace(text, 'bad.jsonl'),
    (err: unknown) => {
      assert.ok(err instanceof TraceFormatError, `expected TraceFormatError, got ${String(err)}`);
      assert.ok(err.message.startsWith(expected), `message ${JSON.stringify(err.message)} should start with ${JSON.stringify(expected)}`);
      assert.equal(err.code, 'MOCKFLEET_ERR_TRACE_FORMAT');
      assert.equal(err.status, 400);
      return true;
    },
  );
}

const GOOD = '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0]}';

test('trace-mooncake - malformed lines fail with file:line and the offending field', () => {
  expectTraceError(`${GOOD}\n\n{"timestamp": 0, "input_length": 10,`, 'bad.jsonl:3: invalid JSON');
  expectTraceError(`${GOOD}\n[1, 2]`, 'bad.jsonl:2: expected a JSON object');
  expectTraceError(`${GOOD}\n{"timestamp": 0, "input_length": 10, "hash_ids": [0]}`, 'bad.jsonl:2: output_length: missing');
  expectTraceError('{"input_length": 10, "output_length": 2, "hash_ids": [0]}', 'bad.jsonl:1: timestamp: missing');
  expectTraceError('{"timestamp": 0, "output_length": 2, "hash_ids": [0]}', 'bad.jsonl:1: input_length: missing');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2}', 'bad.jsonl:1: hash_ids: missing');
  expectTraceError('{"timestamp": "0", "input_length": 10, "output_length": 2, "hash_ids": [0]}', 'bad.jsonl:1: timestamp: must be a number');
  expectTraceError('{"timestamp": -5, "input_length": 10, "output_length": 2, "hash_ids": [0]}', 'bad.jsonl:1: timestamp: must be ≥ 0');
  expectTraceError('{"timestamp": 0, "input_length": 10.5, "output_length": 2, "hash_ids": [0]}', 'bad.jsonl:1: input_length: must be an integer');
  expectTraceError('{"timestamp": 0, "input_tokens": -3, "output_length": 2, "hash_ids": [0]}', 'bad.jsonl:1: input_tokens: must be ≥ 1');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": -1, "hash_ids": [0]}', 'bad.jsonl:1: output_length: must be ≥ 1');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": "0,1"}', 'bad.jsonl:1: hash_ids: must be a list');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": []}', 'bad.jsonl:1: hash_ids: must not be empty');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0, -1]}', 'bad.jsonl:1: hash_ids: element 1 must be a non-negative integer');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0, 1.5]}', 'bad.jsonl:1: hash_ids: element 1');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0], "session_id": ""}', 'bad.jsonl:1: session_id: must be a non-empty string');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0], "session_id": "s", "delay": 5}', 'bad.jsonl:1: delay: is not allowed on the first turn');
  expectTraceError('{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0], "delay_ms": 5}', 'bad.jsonl:1: delay_ms: is only allowed on a later turn');
});

test('trace-mooncake - a file error names the file and line through readMooncakeTrace', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-trace-'));
  try {
    const path = join(dir, 'x.jsonl');
    writeFileSync(path, `${GOOD}\n${GOOD}\n{"timestamp": 0, "input_length": 10, "output_length": "many", "hash_ids": [0]}\n`);
    await assert.rejects(readMooncakeTrace(path), (err: unknown) => err instanceof TraceFormatError && err.message.startsWith(`${path}:3: output_length: must be an integer`));
    await assert.rejects(readMooncakeTrace(join(dir, 'missing.jsonl')), (err: unknown) => err instanceof TraceFormatError && err.message.includes('cannot read trace file'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('trace-mooncake - ideal prefix reuse counts leading blocks seen in earlier requests, token-exact', () => {
  const bs = 4;
  const reqs = [
    req([1, 2, 3], 10, 0), // 4 + 4 + 2 tokens, nothing seen before
    req([1, 2, 3], 12, 1), // blocks 1, 2 reused (8), block 3 had only 2 tokens before: +2, stop
    req([1, 2, 9], 12, 2), // 1, 2 reused (8); 9 under [1,2] is new
    req([5, 2, 3], 12, 3), // [5] is a new prefix: nothing reused although 2 and 3 appeared elsewhere
    req([1, 2, 3], 11, 4), // 1, 2 (8) + block 3: 3 tokens, 4 were seen (request 2): +3
  ];
  const s = computeTraceStats(reqs, bs);
  assert.equal(s.totalInputTokens, 10 + 12 + 12 + 12 + 11);
  assert.equal(s.idealReusedInputTokens, 0 + 10 + 8 + 0 + 11);
  assert.equal(s.idealPrefixReuseRatio, 29 / 57);
});

test('trace-mooncake - ideal prefix reuse processes requests in timestamp order, not file order', () => {
  const a = req([1, 2], 8, 50);
  const b = req([1], 4, 10);
  const s = computeTraceStats([a, b], 4);
  // b arrives first (nothing cached); a then reuses block [1].
  assert.equal(s.idealReusedInputTokens, 4);
});
