import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  computeTraceStats,
  parseMooncakeTrace,
  readMooncakeTrace,
  synthesizePromptTokens,
} from '../../src/trace/mooncake.js';
import type { TraceRequest } from '../../src/trace/mooncake.js';
import { FastLine, scanLine } from '../../src/trace/fast-line.js';
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

// ---- the byte scanner (readMooncakeTrace's fast path) must agree with JSON.parse line by line

const TRICKY_LINES = [
  GOOD,
  '\ufeff{"timestamp": 1, "input_length": 10, "output_length": 2, "hash_ids": [0]}',
  '{"timestamp":2,"input_length":10,"output_length":2,"hash_ids":[0,1,2]}\r',
  '  {"timestamp": 3.5, "input_length": 10, "output_length": 2, "hash_ids": [7]}  ',
  '{"timestamp": 4e3, "input_length": 10, "output_length": 2, "hash_ids": [7]}',
  '{"timestamp": 5, "input_length": 10, "output_length": 2, "hash_ids": [1, 2], "session_id": "s\\u00e9"}',
  '{"timestamp": 6, "input_length": 10, "output_length": 2, "hash_ids": [1, 2, 5], "session_id": "sé"}',
  '{"timestamp": 7, "input_length": 10, "output_length": 2, "hash_ids": [1], "session_id": "sé", "delay": 2.5}',
  '{"timestamp": 8, "input_length": 10, "input_length": 12, "output_length": 2, "hash_ids": [1]}',
  '{"timestamp": 9, "input_length": 10, "output_length": 2, "hash_ids": [18446744073709551615, 4294967297, 123456789012345]}',
  '{"timestamp": 10, "input_length": 10, "output_length": 2, "hash_ids": [3], "extra": {"a": [1, {"b": null}]}, "note": "x"}',
  '{"timestamp": null, "created_time": 11, "input_tokens": 9, "output_tokens": 3, "hash_ids": [3], "session_id": 42}',
  '{"input_length": 4, "output_length": 1, "hash_ids": [1], "session_id": 42, "delay_ms": 100}',
  '{"timestamp": 12, "input_length": 10, "output_length": 2, "hash_ids": [ 1 , 2 ], "session_id": "a b", "delay": null}',
  '',
  '   ',
  '{"timestamp": 13, "input_length": 10, "output_length": 2, "hash_ids": [0], "session_id": "a b", "delay_ms": 0}',
];

async function viaFile(text: string): Promise<TraceRequest[]> {
  const dir = mkdtempSync(join(tmpdir(), 'mockfleet-trace-'));
  try {
    const path = join(dir, 't.jsonl');
    writeFileSync(path, text);
    return await readMooncakeTrace(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function plain(reqs: readonly TraceRequest[]): unknown[] {
  return reqs.map((r) => ({ ...r, hashIds: Array.from(r.hashIds) }));
}

test('trace-mooncake - the byte scanner takes the usual lines and leaves everything unusual to JSON.parse', () => {
  const out = new FastLine();
  const scan = (line: string): boolean => {
    const b = Buffer.from(line, 'utf8');
    return scanLine(b, 0, b.length, out);
  };
  assert.equal(scan('{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47]}'), true);
  assert.deepEqual(Array.from(out.hashIds.subarray(0, out.hashCount)), [46, 47]);
  assert.equal(scan(TRICKY_LINES[2] as string), true);
  assert.equal(scan(TRICKY_LINES[13] as string), true);
  assert.equal(out.sessionId, 'a b');
  for (const i of [1, 3, 4, 5, 6, 8, 9, 10]) assert.equal(scan(TRICKY_LINES[i] as string), false, `line ${i} needs JSON.parse`);
  assert.equal(scan('{"timestamp": 0, "input_length": 01, "output_length": 2, "hash_ids": [0]}'), false, 'leading zero');
  assert.equal(scan('{"timestamp": 0, "input_length": 1, "output_length": 2, "hash_ids": [0,]}'), false, 'trailing comma');
  assert.equal(scan('{"timestamp": 0, "input_length": 1, "output_length": 2, "hash_ids": [0]} x'), false, 'trailing garbage');
});

test('trace-mooncake - readMooncakeTrace (byte scanner) equals parseMooncakeTrace (JSON.parse) on tricky lines and both shipped traces', async () => {
  const text = TRICKY_LINES.join('\n');
  assert.deepEqual(plain(await viaFile(text)), plain(parseMooncakeTrace(text, 't.jsonl')));
  assert.deepEqual(plain(await viaFile(`${text}\n`)), plain(parseMooncakeTrace(`${text}\n`, 't.jsonl')));
  for (const name of ['conversation_trace.jsonl', 'synthetic_trace.jsonl']) {
    const path = new URL(name, DATA).pathname;
    const fast = await readMooncakeTrace(path);
    const slow = parseMooncakeTrace(readFileSync(path, 'utf8'), path);
    assert.equal(fast.length, slow.length);
    assert.deepEqual(plain(fast), plain(slow), name);
  }
});

test('trace-mooncake - readMooncakeTrace reports the same errors as parseMooncakeTrace, line by line', async () => {
  const bad = [
    '{"timestamp": 0, "input_length": 10,',
    '[1, 2]',
    '{"timestamp": 0, "input_length": 10, "hash_ids": [0]}',
    '{"timestamp": -5, "input_length": 10, "output_length": 2, "hash_ids": [0]}',
    '{"timestamp": 0, "input_length": 0, "output_length": 2, "hash_ids": [0]}',
    '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": []}',
    '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0, 1.5]}',
    '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0], "session_id": ""}',
    '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0], "delay_ms": 5}',
    '{"timestamp": 0, "input_length": 10, "output_length": "2", "hash_ids": [0]}',
    '{}',
  ];
  for (const line of bad) {
    const text = `${GOOD}\n\n${line}\n${GOOD}\n`;
    let expected = '';
    try {
      parseMooncakeTrace(text, 'X');
    } catch (err) {
      expected = (err as Error).message.replace(/^X:/, '');
    }
    assert.ok(expected.startsWith('3: '), `slow path must reject ${line}`);
    await assert.rejects(viaFile(text), (err: unknown) => err instanceof TraceFormatError && err.message.endsWith(expected), line);
  }
});

test('trace-mooncake - readMooncakeTrace handles lines longer than its read buffer and files without a final newline', async () => {
  const ids = Array.from({ length: 2_100_000 }, (_, i) => i);
  const long = JSON.stringify({ timestamp: 1, input_length: 5, output_length: 2, hash_ids: ids });
  const reqs = await viaFile(`${GOOD}\n${long}\n${GOOD}`);
  assert.equal(reqs.length, 3);
  assert.equal(reqs[1]!.hashIds.length, ids.length);
  assert.equal(reqs[1]!.hashIds[ids.length - 1], ids.length - 1);
  assert.deepEqual(reqs.map((r) => r.line), [1, 2, 3]);
});
