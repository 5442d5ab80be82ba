/**
 * vLLM-native KV events over ZMQ on a live `serve`: a strict consumer written from vLLM's struct
 * definitions (test/support/vllm-kv-events.ts) reads every rank's PUB socket and replay ROUTER.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { xxh3 } from '@node-rs/xxhash';
import { Dealer, Subscriber } from 'zeromq';
import { runCli, startServe } from '../support/serve-process.js';
import type { ServeProcess } from '../support/serve-process.js';
import { decodeVllmBatch, seqOf } from '../support/vllm-kv-events.js';

const SEED = 1337n;
const END_SEQ = 0xffff_ffff_ffff_ffffn;

interface KvEndpoint {
  rank: number;
  worker_id: string;
  dp_rank: number;
  endpoint: string;
  replay_endpoint: string | null;
  topic: string;
}

function listen(port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(null));
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

/** A base port whose next n ports are free right now (held briefly, then released). */
async function freePortRange(n: number, avoid: number[] = []): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 35000);
    if (avoid.some((a) => Math.abs(a - base) < 2 * n)) continue;
    const held: Server[] = [];
    for (let i = 0; i < n; i++) {
      const s = await listen(base + i);
      if (s === null) break;
      held.push(s);
    }
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
    if (held.length === n) return base;
  }
  throw new Error(`no ${n} consecutive free ports found`);
}

async function complete(url: string, prompt: number[], maxTokens: number, rank?: number): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(rank === undefined ? {} : { 'x-mockfleet-rank': String(rank) }) },
    body: JSON.stringify({ model: 'mockfleet/mock-llm', prompt, max_tokens: maxTokens }),
  });
  await res.arrayBuffer();
  return res.status;
}

async function metric(url: string, name: string, labels: RegExp): Promise<number> {
  const text = await (await fetch(url)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.indexOf('}');
    if (labels.test(line.slice(name.length + 1, close))) return Number(line.slice(close + 2));
  }
  throw new Error(`${name}{${labels.source}} not in /metrics`);
}

/** XXH3-64 (seed 1337) chain, Dynamo lib/tokens: block hash over u32 LE tokens, then [parent, block] u64 LE. */
function chain(parent: bigint | null, tokens: number[], blockSize: number): bigint[] {
  const out: bigint[] = [];
  let prev = parent;
  for (let b = 0; b * blockSize < tokens.length; b++) {
    const bytes = Buffer.alloc(blockSize * 4);
    for (let i = 0; i < blockSize; i++) bytes.writeUInt32LE(tokens[b * blockSize + i]!, i * 4);
    const blockHash = xxh3.xxh64(bytes, SEED);
    let seq = blockHash;
    if (prev !== null) {
      const pair = Buffer.alloc(16);
      pair.writeBigUInt64LE(prev, 0);
      pair.writeBigUInt64LE(blockHash, 8);
      seq = xxh3.xxh64(pair, SEED);
    }
    out.push(seq);
    prev = seq;
  }
  return out;
}

async function replay(endpoint: string, start: bigint): Promise<Array<{ seq: bigint; payload: Buffer }>> {
  const d = new Dealer({ receiveTimeout: 5000, linger: 0 });
  d.connect(endpoint);
  const start8 = Buffer.alloc(8);
  start8.writeBigUInt64BE(start);
  await d.send([Buffer.alloc(0), start8]);
  const out: Array<{ seq: bigint; payload: Buffer }> = [];
  try {
    for (;;) {
      const frames = await d.receive();
      assert.equal(frames.length, 3, 'replay reply = [empty delimiter, seq, payload]');
      assert.equal(frames[0]!.length, 0);
      const seq = seqOf(frames[1]!);
      if (seq === END_SEQ) {
        assert.equal(frames[2]!.length, 0, 'end marker carries an empty payload');
        return out;
      }
      out.push({ seq, payload: frames[2]! });
    }
  } finally {
    d.close();
  }
}

test('kv-events zmq - every rank publishes vLLM >= 0.24 batches a strict consumer reads; replay and a stalled subscriber', async () => {
  const ranks = 4;
  const pubBase = await freePortRange(ranks);
  const replayBase = await freePortRange(ranks, [pubBase]);
  const cfg = { enable_kv_cache_events: true, publisher: 'zmq', endpoint: `tcp://*:${pubBase}`, replay_endpoint: `tcp://*:${replayBase}`, topic: 'kv@mock', hwm: 16, buffer_steps: 5000 };
  const serve: ServeProcess = await startServe(['--num-workers', '2', '--data-parallel-size', '2', '--block-size', '4', '--num-gpu-blocks', '96', '--speedup-ratio', '0', '--kv-events-config', JSON.stringify(cfg)]);
  const subs: Subscriber[] = [];
  try {
    const eps = (serve.ready as unknown as { kv_events_endpoints: KvEndpoint[] }).kv_events_endpoints;
    assert.equal(eps.length, ranks);
    assert.deepEqual(eps.map((e) => e.endpoint), [0, 1, 2, 3].map((r) => `tcp://127.0.0.1:${pubBase + r}`), 'rank r binds endpoint port + r on --host');
    assert.deepEqual(eps.map((e) => e.replay_endpoint), [0, 1, 2, 3].map((r) => `tcp://127.0.0.1:${replayBase + r}`));
    assert.deepEqual(eps.map((e) => e.dp_rank), [0, 1, 0, 1]);

    const live: Array<Array<{ seq: bigint; payload: Buffer }>> = eps.map(() => []);
    const loops = eps.map(async (e, r) => {
      const s = new Subscriber({ linger: 0 });
      subs.push(s);
      s.connect(e.endpoint);
      s.subscribe(cfg.topic);
      try {
        for await (const frames of s) {
          assert.equal(frames.length, 3, 'PUB frames = [topic, seq, payload]');
          assert.equal(frames[0]!.toString(), cfg.topic);
          live[r]!.push({ seq: seqOf(frames[1]!), payload: frames[2]! });
        }
      } catch (err) {
        if ((err as { code?: string }).code !== 'EAGAIN' && !s.closed) throw err;
      }
    });
    await new Promise((r) => setTimeout(r, 300)); // ZMQ slow joiner: let the subscriptions land

    assert.equal(await complete(serve.ready.url, [1, 2, 3, 4, 5, 6, 7, 8, 9], 3, 1), 200);
    const prompts = Array.from({ length: 60 }, (_, i) => Array.from({ length: 12 + (i % 9) }, (_, j) => 100 + i * 37 + j));
    const statuses = await Promise.all(prompts.map((p, i) => complete(serve.ready.url, p, 3, i % ranks)));
    assert.ok(statuses.every((s) => s === 200), `statuses ${statuses.join(',')}`);
    await new Promise((r) => setTimeout(r, 400));

    for (let r = 0; r < ranks; r++) {
      const ep = eps[r]!;
      // Replay from 0 returns every batch of this rank (buffer_steps holds them all), then the end marker.
      const all = await replay(ep.replay_endpoint!, 0n);
      assert.ok(all.length > 0, `rank ${r} published`);
      assert.deepEqual(all.map((b) => b.seq), all.map((_, i) => BigInt(i)), `rank ${r}: seqs 0, 1, 2, ... per socket`);
      // The live stream is consecutive and equals the replayed bytes.
      const got = live[r]!;
      assert.ok(got.length > 0, `rank ${r}: live batches`);
      for (let i = 1; i < got.length; i++) assert.equal(got[i]!.seq, got[i - 1]!.seq + 1n, `rank ${r}: consecutive live seqs`);
      for (const b of got) assert.ok(all[Number(b.seq)]!.payload.equals(b.payload), `rank ${r} seq ${b.seq}: replay = live`);
      const tail = await replay(ep.replay_endpoint!, BigInt(all.length - 2));
      assert.deepEqual(tail.map((b) => b.seq), [BigInt(all.length - 2), BigInt(all.length - 1)], 'replay from a start seq');

      // Strict decode, the XXH3 chain, token ids, and a consumer-side index of this rank.
      const index = new Set<bigint>();
      for (const b of all) {
        const batch = decodeVllmBatch(b.payload, `rank ${r} seq ${b.seq}`);
        assert.equal(batch.dataParallelRank, ep.dp_rank);
        assert.ok(batch.ts > 1.7e9 && batch.ts < 4e9, 'ts in seconds since the epoch');
        assert.ok(batch.events.length > 0, 'one batch per pass that had events');
        for (const e of batch.events) {
          if (e.type === 'BlockStored') {
            assert.equal(e.block_size, 4);
            assert.equal(e.token_ids.length, 4 * e.block_hashes.length, 'token ids = block_size x blocks');
            assert.deepEqual(e.block_hashes, chain(e.parent_block_hash, e.token_ids, 4), 'XXH3 chain');
            assert.ok(e.parent_block_hash === null || index.has(e.parent_block_hash), 'parent known to the consumer');
            assert.deepEqual([e.lora_id, e.medium, e.lora_name, e.group_idx, e.kv_cache_spec_kind], [null, 'GPU', null, 0, 'full_attention']);
            assert.deepEqual(e.extra_keys, e.block_hashes.map(() => null));
            for (const h of e.block_hashes) index.add(h);
          } else if (e.type === 'BlockRemoved') {
            assert.equal(e.group_idx, 0);
            for (const h of e.block_hashes) assert.ok(index.delete(h), 'removed blocks were stored');
          } else {
            index.clear();
          }
        }
      }
      const cached = await metric(serve.ready.metrics, 'mockfleet_kv_inactive_blocks', new RegExp(`engine="${ep.dp_rank}".*worker_id="${ep.worker_id}"|worker_id="${ep.worker_id}".*engine="${ep.dp_rank}"`));
      assert.ok(index.size > 0, `rank ${r}: blocks cached`);
      assert.equal(index.size, cached, `rank ${r}: the consumer's index holds exactly the rank's cached blocks`);
      if (r === 1) assert.ok(index.has(14643705804678351452n) && index.has(4945711292740353085n), 'engine-spec test vector for tokens 1..8');
    }
    for (const s of subs) s.close();
    await Promise.all(loops);

    // A subscriber that never reads: the rank's passes go on, what cannot be delivered is counted.
    const stalled = new Subscriber({ receiveHighWaterMark: 1, receiveBufferSize: 4096, linger: 0 });
    subs.push(stalled);
    stalled.connect(eps[0]!.endpoint);
    stalled.subscribe('');
    await new Promise((r) => setTimeout(r, 300));
    const zmqDropped = (): Promise<number> => metric(serve.ready.metrics, 'mockfleet_publisher_dropped_total', /transport="zmq"/);
    const deadline = Date.now() + 40_000;
    let round = 0;
    while ((await zmqDropped()) === 0) {
      assert.ok(Date.now() < deadline, 'no ZMQ drop counted within 40 s of a stalled subscriber');
      const batch = Array.from({ length: 16 }, (_, i) => Array.from({ length: 256 }, (_, j) => 5000 + round * 7919 + i * 613 + j));
      const st = await Promise.all(batch.map((p) => complete(serve.ready.url, p, 1, 0)));
      assert.ok(st.every((s) => s === 200), 'requests keep completing: the rank never waits for a subscriber');
      round++;
    }
    assert.equal(await metric(serve.ready.metrics, 'mockfleet_publisher_dropped_total', /transport="nats"/), 0, 'ranks never had to drop on a stalled publisher');
    assert.ok((await metric(serve.ready.metrics, 'mockfleet_publisher_published_total', /transport="zmq"/)) > 0);
  } finally {
    for (const s of subs) if (!s.closed) s.close();
    assert.equal(await serve.stop(), 0, serve.stderr());
  }
});

test('kv-events zmq - bad --kv-events-config: message naming the flag, exit 2', async () => {
  const base = await freePortRange(2);
  const blocker = await listen(base);
  assert.ok(blocker !== null);
  try {
    const cases: Array<[string, RegExp]> = [
      ['{"enable_kv_cache_events": true,', /not valid JSON/],
      ['{"enable_kv_cache_events": true, "endpoit": "tcp://*:5557"}', /unknown key\(s\) "endpoit"/],
      ['{"enable_kv_cache_events": true, "endpoint": "tcp://*:40000", "replay_endpoint": "tcp://*:40001"}', /collide/],
      ['{"enable_kv_cache_events": true, "endpoint": "tcp://*:65535"}', /exceeds 65535/],
      ['{"enable_kv_cache_events": true, "hwm": -1}', /"hwm" must be an integer/],
      [`{"enable_kv_cache_events": true, "endpoint": "tcp://*:${base}"}`, /cannot bind endpoint tcp:\/\/127\.0\.0\.1:\d+/],
    ];
    const results = await Promise.all(cases.map(([json]) => runCli(['serve', '--port', '0', '--num-workers', '2', '--kv-events-config', json])));
    results.forEach((res, i) => {
      const [json, re] = cases[i]!;
      assert.equal(res.code, 2, `${json}: exit code; stderr ${res.stderr}`);
      assert.match(res.stderr, /--kv-events-config/, json);
      assert.match(res.stderr, re, json);
    });
  } finally {
    await new Promise((r) => blocker.close(r));
  }
});
