import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect } from '@nats-io/transport-node';
import { Unpackr } from 'msgpackr';
import { startNatsServer } from '../support/nats-server.js';
import { runCli, startServe } from '../support/serve-process.js';
import { threadCpus, allowedCpus } from '../../src/util/affinity.js';

const unpackr = new Unpackr({ int64AsType: 'bigint', mapsAsObjects: true, useRecords: false });

async function complete(url: string, model: string, prompt: number[], maxTokens: number, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function promtoolProblems(text: string): string[] {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
  // vLLM's own names contain ':' and vllm:iteration_tokens_total is a histogram ending in _total;
  // promtool's lint flags both, and users need exactly those names. Everything else must be clean.
  return lines.filter(
    (l) => !/^vllm:\S+ metric names should not contain ':'$/.test(l) && !/^vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix$/.test(l),
  );
}

test('serve - bad flags print a message naming the flag and exit 2', async () => {
  for (const [args, re] of [
    [['serve', '--num-workers', '0'], /--num-workers/],
    [['serve', '--block-size', '-3'], /block-size/],
    [['serve', '--cpus', '4096'], /--cpus: CPU 4096 is not in this process's allowed set/],
    [['serve', '--router', 'nope'], /router/],
    [['serve', '--ranks-per-thread', 'many'], /--ranks-per-thread: must be auto or an integer/],
    [['serve', '--bogus-flag'], /bogus-flag/],
    [['serve', '--config', '/nonexistent.yaml'], /--config: cannot read/],
  ] as const) {
    const r = await runCli([...args]);
    assert.equal(r.code, 2, `${args.join(' ')} exit code; stderr: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stdout, /mockfleet ready/);
  }
});

test('serve - NATS events, Prometheus metrics and pinned ranks end to end', async () => {
  const nats = await startNatsServer();
  const cpus = allowedCpus();
  const serve = await startServe([
    '--nats', nats.url,
    '--num-workers', '2',
    '--data-parallel-size', '2',
    '--block-size', '4',
    '--num-gpu-blocks', '24',
    '--max-model-len', '96',
    '--speedup-ratio', '0',
    '--cpus', cpus.join(','),
    '--router', 'kv',
  ]);
  const nc = await connect({ servers: nats.url });
  try {
    const { ready } = serve;
    assert.equal(ready.ranks, 4);
    assert.equal(ready.workers, 2);
    assert.equal(ready.nats, nats.url);
    assert.equal(ready.worker_ids.length, 2);

    // Pinning: every rank thread's Cpus_allowed_list is its one CPU.
    const ranks = ready.placement.filter((p) => p.thread.startsWith('rank'));
    assert.equal(ranks.length, 4);
    for (const p of ranks) {
      assert.ok(p.tid !== null && p.cpus !== null);
      assert.deepEqual(threadCpus(ready.pid, p.tid), p.cpus, `${p.thread} pinned`);
    }

    const messages: Array<{ subject: string; env: Record<string, unknown>; payload: Record<string, unknown> }> = [];
    const sub = nc.subscribe('namespace.dynamo.component.backend.>');
    void (async () => {
      for await (const m of sub) {
        const env = unpackr.unpack(m.data) as Record<string, unknown>;
        const payload = unpackr.unpack(env['payload'] as Uint8Array) as Record<string, unknown>;
        messages.push({ subject: m.subject, env, payload });
      }
    })();
    await nc.flush();

    // A known prompt: its first two blocks must carry the engine-spec test-vector hashes.
    const first = await complete(ready.url, ready.model, [1, 2, 3, 4, 5, 6, 7, 8, 9], 3, { 'x-mockfleet-rank': '1' });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const usage = first.body['usage'] as Record<string, number>;
    assert.equal(usage['prompt_tokens'], 9);
    assert.equal(usage['completion_tokens'], 3);

    // Enough distinct prompts to force evictions in 24-block caches (Removed events).
    const prompts = Array.from({ length: 40 }, (_, i) => Array.from({ length: 12 + (i % 5) }, (_, j) => 100 + i * 31 + j));
    const results = await Promise.all(prompts.map((p) => complete(ready.url, ready.model, p, 4)));
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    // Repeated prompt: kv router sends it where its prefix lives; cached tokens reported.
    const again = await complete(ready.url, ready.model, prompts[39] as number[], 2);
    const details = (again.body['usage'] as Record<string, Record<string, number>>)['prompt_tokens_details'];
    assert.ok((details?.['cached_tokens'] ?? 0) >= 12, `cached tokens ${JSON.stringify(details)}`);

    // Idle heartbeats need > 1 s of quiet; then the consumer-side state is complete.
    await new Promise((r) => setTimeout(r, 1500));
    await nc.flush();

    // Current Dynamo wire (default): endpoint-scoped feeds, kv-events = an array of RouterEvents per pass.
    const kv = messages.filter((m) => m.subject === 'namespace.dynamo.component.backend.endpoint.generate.kv-events');
    const fpm = messages.filter((m) => m.subject === 'namespace.dynamo.component.backend.endpoint.generate.forward-pass-metrics');
    for (const m of kv) assert.ok(Array.isArray(m.payload) && m.payload.length > 0, 'kv-events payload is a non-empty array of RouterEvents');
    const routerEvents = kv.flatMap((m) => m.payload as unknown as Array<Record<string, unknown>>);
    assert.ok(kv.length > 0 && fpm.length > 0, `kv ${kv.length} fpm ${fpm.length}`);

    // Envelope: field order, u64 ids, per-publisher monotonic sequences.
    const lastSeq = new Map<string, bigint>();
    for (const m of messages) {
      assert.deepEqual(Object.keys(m.env).slice(0, 5), ['topic', 'publisher_id', 'sequence', 'published_at', 'payload']);
      const key = `${String(m.env['publisher_id'])}/${String(m.env['topic'])}`;
      const seq = BigInt(m.env['sequence'] as bigint | number);
      const prev = lastSeq.get(key);
      if (prev !== undefined) assert.equal(seq, prev + 1n, `sequence of ${key}`);
      lastSeq.set(key, seq);
      assert.ok(ready.worker_ids.includes(String(m.env['publisher_id'])), 'publisher_id is a worker id');
    }

    // A record a rank could not put in its event ring within its timeout (a host too busy to run
    // the publisher) is dropped and counted, never silent: each rank's gaps must be counted drops.
    const metrics = await (await fetch(ready.metrics)).text();
    const drops = new Map<string, number>();
    for (const m of metrics.matchAll(/^mockfleet_rank_event_drops_total\{([^}]*)\} (\S+)$/gm)) {
      const labels = m[1] as string;
      drops.set(`${/worker_id="(\d+)"/.exec(labels)?.[1]}/${/engine="(\d+)"/.exec(labels)?.[1]}`, Number(m[2]));
    }
    assert.equal(drops.size, 4);

    // FPM: counter_id from 1 per (worker, dp_rank), heartbeats while idle.
    const counters = new Map<string, number[]>();
    for (const m of fpm) {
      const k = `${String(m.payload['worker_id'])}/${String(m.payload['dp_rank'])}`;
      const list = counters.get(k) ?? [];
      list.push(Number(m.payload['counter_id']));
      counters.set(k, list);
    }
    assert.equal(counters.size, 4, 'every rank publishes FPM (heartbeats included)');
    for (const [k, list] of counters) {
      for (let i = 1; i < list.length; i++) assert.ok((list[i] as number) > (list[i - 1] as number), `${k} counter_id increasing`);
      // Ids run 1, 2, … ; the ones missing were dropped at the rank.
      const missing = (list[list.length - 1] as number) - list.length;
      assert.ok(missing <= (drops.get(k) ?? 0), `${k}: ${missing} counter_id(s) missing but ${drops.get(k)} event records dropped (ids ${list.join(',')})`);
      if ((drops.get(k) ?? 0) === 0) assert.equal(list[0], 1, `${k} first counter_id`);
    }
    const heartbeats = fpm.filter((m) => m.payload['wall_time'] === 0 && (m.payload['scheduled_requests'] as Record<string, number>)['num_decode_requests'] === 0);
    assert.ok(heartbeats.length >= 4, `idle heartbeats: ${heartbeats.length}`);

    // KV events into a consumer-side prefix index (per worker id + dp rank).
    const index = new Map<string, Set<bigint>>();
    let sawVector = false;
    for (const re of routerEvents) {
      const ev = re['event'] as Record<string, unknown>;
      const k = `${String(re['worker_id'])}/${String(ev['dp_rank'])}`;
      const set = index.get(k) ?? new Set<bigint>();
      index.set(k, set);
      const data = ev['data'];
      if (data === 'cleared') {
        set.clear();
        continue;
      }
      const d = data as Record<string, Record<string, unknown>>;
      if (d['stored'] !== undefined) {
        const blocks = d['stored']['blocks'] as Array<Record<string, bigint>>;
        for (const b of blocks) set.add(BigInt(b['block_hash'] as bigint));
        if (blocks.some((b) => BigInt(b['block_hash'] as bigint) === 14643705804678351452n)) {
          const second = blocks.find((b) => BigInt(b['block_hash'] as bigint) === 4945711292740353085n);
          if (second !== undefined) {
            assert.equal(BigInt(second['tokens_hash'] as bigint), 16777012769546811212n, 'tokens_hash of [5,6,7,8]');
            sawVector = true;
          }
        }
      } else if (d['removed'] !== undefined) {
        for (const h of d['removed']['block_hashes'] as bigint[]) set.delete(BigInt(h));
      }
    }
    assert.ok(sawVector, 'the engine-spec test vectors appear in a Stored event');
    const inactive = new Map<string, number>();
    for (const m of metrics.matchAll(/^mockfleet_kv_inactive_blocks\{([^}]*)\} (\S+)$/gm)) {
      const labels = m[1] as string;
      const engine = /engine="(\d+)"/.exec(labels)?.[1];
      const worker = /worker_id="(\d+)"/.exec(labels)?.[1];
      inactive.set(`${worker}/${engine}`, Number(m[2]));
    }
    assert.equal(inactive.size, 4);
    for (const [k, n] of inactive) {
      // A dropped Stored or Removed event leaves the consumer's index behind, as it would upstream.
      if ((drops.get(k) ?? 0) === 0) assert.equal(index.get(k)?.size ?? 0, n, `consumer index of ${k} agrees with the rank's cached blocks`);
    }

    // Prometheus: vLLM names with model_name/engine/worker_id labels, promtool-clean.
    assert.match(metrics, /^vllm:num_requests_running\{model_name="[^"]+",engine="0",worker_id="\d+"\} 0$/m);
    assert.match(metrics, /^vllm:request_success_total\{[^}]*finished_reason="length"\} \d+$/m);
    assert.match(metrics, /^vllm:time_to_first_token_seconds_bucket\{[^}]*le="\+Inf"\} \d+$/m);
    assert.match(metrics, /^mockfleet_publisher_published_total\{[^}]*\} [1-9]\d*$/m);
    // The serving process's own series, as vLLM's prometheus_client exposes them.
    assert.match(metrics, /^process_resident_memory_bytes [1-9]\d*$/m);
    assert.match(metrics, /^process_start_time_seconds \d+$/m);
    assert.deepEqual(promtoolProblems(metrics), []);
    const success = [...metrics.matchAll(/^vllm:request_success_total\{[^}]*finished_reason="length"\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    assert.equal(success, 42);
    sub.unsubscribe();
  } finally {
    await nc.close();
    const code = await serve.stop('SIGTERM');
    assert.equal(code, 0, `serve exit code; stderr:\n${serve.stderr()}`);
    await nats.stop();
  }
});

test('serve - NATS killed and restarted while serving: no failed requests, events resume, drops counted', async () => {
  const nats = await startNatsServer();
  const serve = await startServe(['--nats', nats.url, '--num-workers', '2', '--speedup-ratio', '0', '--block-size', '16']);
  try {
    const { ready } = serve;
    const load = async (n: number): Promise<void> => {
      const rs = await Promise.all(Array.from({ length: n }, (_, i) => complete(ready.url, ready.model, Array.from({ length: 40 }, (_, j) => i * 7 + j + 1), 8)));
      for (const r of rs) assert.equal(r.status, 200, JSON.stringify(r.body));
    };
    await load(10);
    await nats.stop(true);
    await load(30);
    const metricValue = async (name: string): Promise<number> => {
      const text = await (await fetch(ready.metrics)).text();
      const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text);
      return Number(m?.[1] ?? 'NaN');
    };
    assert.equal(await metricValue('mockfleet_publisher_nats_connected'), 0);
    await nats.restart();
    const nc = await connect({ servers: nats.url });
    try {
      let got = 0;
      const sub = nc.subscribe('namespace.dynamo.component.backend.>', { callback: () => { got++; } });
      await nc.flush();
      const end = Date.now() + 10_000;
      while ((await metricValue('mockfleet_publisher_nats_connected')) !== 1) {
        if (Date.now() > end) throw new Error('publisher did not reconnect');
        await new Promise((r) => setTimeout(r, 100));
      }
      await load(10);
      const end2 = Date.now() + 5000;
      while (got === 0 && Date.now() < end2) await new Promise((r) => setTimeout(r, 50));
      assert.ok(got > 0, 'events resume after NATS restart');
      sub.unsubscribe();
      const published = await metricValue('mockfleet_publisher_published_total');
      const dropped = await metricValue('mockfleet_publisher_dropped_total');
      assert.ok(published > 0);
      assert.ok(Number.isFinite(dropped) && dropped >= 0, 'drops counted');
    } finally {
      await nc.close();
    }
  } finally {
    assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
    await nats.stop();
  }
});

test('serve - a rank thread killed mid-run fails its requests cleanly and restarts', async () => {
  const serve = await startServe(['--num-workers', '2', '--speedup-ratio', '1', '--enable-fault-injection']);
  try {
    const { ready } = serve;
    const victim = complete(ready.url, ready.model, [1, 2, 3, 4], 2000, { 'x-mockfleet-rank': '1' });
    await new Promise((r) => setTimeout(r, 200));
    const fault = await fetch(`${ready.url}/admin/fault`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rank: 1, kind: 'throw' }) });
    assert.equal(fault.status, 202);
    const v = await victim;
    assert.equal(v.status, 503, JSON.stringify(v.body));
    assert.match(JSON.stringify(v.body), /rank 1/);
    const end = Date.now() + 5000;
    while ((await fetch(`${ready.url}/health/ready`)).status !== 200) {
      if (Date.now() > end) throw new Error('rank did not come back');
      await new Promise((r) => setTimeout(r, 20));
    }
    const after = await complete(ready.url, ready.model, [1, 2, 3, 4], 3, { 'x-mockfleet-rank': '1' });
    assert.equal(after.status, 200);
    const text = await (await fetch(ready.metrics)).text();
    assert.match(text, /^mockfleet_rank_restarts_total\{[^}]*engine="0"[^}]*\} 1$/m);
  } finally {
    assert.equal(await serve.stop('SIGTERM'), 0, serve.stderr());
  }
});

test('serve - --kv-events-format both also publishes vLLM KVEventBatch payloads (map and array encodings)', async () => {
  const nats = await startNatsServer();
  try {
    for (const encoding of ['map', 'array'] as const) {
      const serve = await startServe(['--nats', nats.url, '--num-workers', '1', '--block-size', '4', '--speedup-ratio', '0', '--kv-events-format', 'both', '--vllm-event-encoding', encoding]);
      const nc = await connect({ servers: nats.url });
      try {
        const batches: unknown[] = [];
        const routerEvents: unknown[] = [];
        nc.subscribe('namespace.dynamo.component.backend.endpoint.generate.kv-events-vllm', {
          callback: (_e, m) => {
            const env = unpackr.unpack(m.data) as Record<string, unknown>;
            batches.push(unpackr.unpack(env['payload'] as Uint8Array));
          },
        });
        nc.subscribe('namespace.dynamo.component.backend.endpoint.generate.kv-events', { callback: (_e, m) => { routerEvents.push(m.data); } });
        await nc.flush();
        const r = await complete(serve.ready.url, serve.ready.model, [1, 2, 3, 4, 5, 6, 7, 8, 9], 2);
        assert.equal(r.status, 200);
        const end = Date.now() + 5000;
        while (batches.length === 0 && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
        assert.ok(routerEvents.length > 0, 'RouterEvents still go to kv-events');
        const first = batches[0];
        let stored: { hashes: unknown; tokens: unknown } | undefined;
        if (encoding === 'map') {
          const b = first as [number, Array<Record<string, unknown>>, number];
          assert.equal(b[2], 0, 'positional batch, data_parallel_rank last');
          const ev = b[1].find((e) => e['type'] === 'BlockStored');
          stored = ev === undefined ? undefined : { hashes: ev['block_hashes'], tokens: ev['token_ids'] };
        } else {
          const b = first as [number, unknown[][], number];
          assert.equal(typeof b[0], 'number', 'ts first');
          assert.equal(b[2], 0, 'data_parallel_rank last');
          const ev = b[1].find((e) => e[0] === 'BlockStored');
          stored = ev === undefined ? undefined : { hashes: ev[1], tokens: ev[3] };
        }
        assert.ok(stored !== undefined, `a BlockStored event in ${JSON.stringify(first, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
        assert.deepEqual((stored.hashes as Array<bigint | number>).map((h) => BigInt(h)).slice(0, 2), [14643705804678351452n, 4945711292740353085n]);
        assert.deepEqual(stored.tokens, [1, 2, 3, 4, 5, 6, 7, 8]);
      } finally {
        await nc.close();
        assert.equal(await serve.stop(), 0, serve.stderr());
      }
    }
  } finally {
    await nats.stop();
  }
});
