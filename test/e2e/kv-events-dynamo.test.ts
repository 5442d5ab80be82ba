/**
 * Dynamo KV events on NATS as current and legacy Dynamo routers read them, and id continuity
 * across rank crashes: a consumer that applies the router's rules (drop any event whose id is
 * not above the last applied one, RankState::observe_live_event in
 * lib/llm/src/kv_router/indexer/recovery/worker_query_state.rs) ends with the ranks' exact state.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { Unpackr } from 'msgpackr';
import { startNatsServer } from '../support/nats-server.js';
import { startServe } from '../support/serve-process.js';

const unpackr = new Unpackr({ int64AsType: 'bigint', mapsAsObjects: true, useRecords: false });

interface Msg {
  subject: string;
  env: Record<string, unknown>;
  payload: unknown;
}

async function collect(nc: NatsConnection, subject: string): Promise<Msg[]> {
  const out: Msg[] = [];
  nc.subscribe(subject, {
    callback: (err, m) => {
      if (err !== null) throw err;
      const env = unpackr.unpack(m.data) as Record<string, unknown>;
      assert.deepEqual(Object.keys(env), ['topic', 'publisher_id', 'sequence', 'published_at', 'payload'], 'Dynamo envelope');
      out.push({ subject: m.subject, env, payload: unpackr.unpack(env['payload'] as Uint8Array) });
    },
  });
  await nc.flush();
  return out;
}

async function complete(url: string, prompt: number[], maxTokens: number, rank: number): Promise<number> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-mockfleet-rank': String(rank) },
    body: JSON.stringify({ model: 'mockfleet/mock-llm', prompt, max_tokens: maxTokens }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** RouterEvent as current Dynamo's serde structs read it (unknown fields fail here too). */
function checkRouterEvent(re: unknown): { worker: bigint; dp: number; id: bigint; data: unknown } {
  const r = re as Record<string, unknown>;
  assert.deepEqual(Object.keys(r), ['worker_id', 'storage_tier', 'event']);
  assert.equal(typeof r['worker_id'], 'bigint');
  const ev = r['event'] as Record<string, unknown>;
  assert.deepEqual(Object.keys(ev), ['event_id', 'data', 'dp_rank']);
  return { worker: r['worker_id'] as bigint, dp: ev['dp_rank'] as number, id: BigInt(ev['event_id'] as bigint), data: ev['data'] };
}

async function inactiveBlocks(metricsUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^mockfleet_kv_inactive_blocks\{([^}]*)\} (\S+)$/gm)) {
    const engine = /engine="(\d+)"/.exec(m[1]!)?.[1];
    const worker = /worker_id="(\d+)"/.exec(m[1]!)?.[1];
    out.set(`${worker}/${engine}`, Number(m[2]));
  }
  return out;
}

test('kv-events dynamo - current wire: arrays of RouterEvents on endpoint subjects; legacy: single maps on component subjects', async () => {
  const nats = await startNatsServer();
  try {
    for (const wire of ['current', 'legacy'] as const) {
      const ep = wire === 'current' ? 'gen2' : 'generate';
      const serve = await startServe(['--nats', nats.url, '--num-workers', '1', '--data-parallel-size', '2', '--block-size', '4', '--speedup-ratio', '0', '--dynamo-wire', wire, ...(wire === 'current' ? ['--endpoint', ep] : [])]);
      const nc = await connect({ servers: nats.url });
      try {
        const all = await collect(nc, 'namespace.dynamo.component.backend.>');
        for (let i = 0; i < 6; i++) assert.equal(await complete(serve.ready.url, Array.from({ length: 10 + i }, (_, j) => 50 * i + j), 2, i % 2), 200);
        await new Promise((r) => setTimeout(r, 1300)); // > 1 s idle: heartbeats and load on every rank
        await nc.flush();
        const scoped = (topic: string): string => `namespace.dynamo.component.backend.endpoint.${ep}.${topic}`;
        const component = (topic: string): string => `namespace.dynamo.component.backend.${topic}`;
        const kvSubject = wire === 'current' ? scoped('kv-events') : component('kv-events');
        const fpmSubject = wire === 'current' ? scoped('forward-pass-metrics') : component('forward-pass-metrics');
        const subjects = new Set(all.map((m) => m.subject));
        assert.deepEqual([...subjects].sort(), [kvSubject, fpmSubject, scoped('kv_metrics')].sort(), `${wire}: subjects`);
        const kv = all.filter((m) => m.subject === kvSubject);
        assert.ok(kv.length > 0);
        const events = kv.flatMap((m) => {
          if (wire === 'current') {
            assert.ok(Array.isArray(m.payload), 'current: typed::<Vec<RouterEvent>>');
            assert.ok((m.payload as unknown[]).length >= 1 && (m.payload as unknown[]).length <= 128);
            return m.payload as unknown[];
          }
          assert.ok(!Array.isArray(m.payload) && typeof m.payload === 'object', 'legacy: one RouterEvent map');
          return [m.payload];
        });
        const lastId = new Map<string, bigint>();
        for (const re of events) {
          const e = checkRouterEvent(re);
          const k = `${e.worker}/${e.dp}`;
          const prev = lastId.get(k);
          assert.ok(prev === undefined ? e.id === 0n : e.id === prev + 1n, `${wire}: ids consecutive per rank`);
          lastId.set(k, e.id);
        }
        assert.equal(lastId.size, 2, 'both dp ranks published');
        const loads = all.filter((m) => m.subject === scoped('kv_metrics')).map((m) => m.payload as Record<string, unknown>);
        assert.ok(loads.length >= 2);
        for (const l of loads) {
          assert.deepEqual(Object.keys(l), ['worker_id', 'dp_rank', 'active_decode_blocks', 'active_prefill_tokens', 'kv_used_blocks']);
          assert.equal(l['active_prefill_tokens'], null, 'workers leave active_prefill_tokens to the router');
        }
      } finally {
        await nc.close();
        assert.equal(await serve.stop(), 0, serve.stderr());
      }
    }
  } finally {
    await nats.stop();
  }
});

test('kv-events dynamo - rank crashes under load: ids stay strictly monotonic, a router-rule consumer ends with the ranks\' state', async () => {
  const nats = await startNatsServer();
  const serve = await startServe(['--nats', nats.url, '--num-workers', '1', '--data-parallel-size', '2', '--block-size', '4', '--num-gpu-blocks', '48', '--speedup-ratio', '0', '--enable-fault-injection']);
  const nc = await connect({ servers: nats.url });
  try {
    const kv = await collect(nc, 'namespace.dynamo.component.backend.endpoint.generate.kv-events');
    const fpm = await collect(nc, 'namespace.dynamo.component.backend.endpoint.generate.forward-pass-metrics');
    let stop = false;
    let sent = 0;
    const load = async (rank: number, salt: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        // Fails with 5xx while the rank restarts; that is fine, the events are what is checked.
        await complete(serve.ready.url, Array.from({ length: 9 + (i % 13) }, (_, j) => salt + (i % 40) * 101 + j), 3, rank);
        sent++;
      }
    };
    const loops = [load(0, 1000), load(0, 90000), load(1, 5000), load(1, 70000)];
    const fault = async (rank: number, kind: string): Promise<void> => {
      const res = await fetch(`${serve.ready.url}/admin/fault`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rank, kind }) });
      assert.equal(res.status, 202, await res.text());
    };
    const restarts = async (): Promise<number> => {
      const text = await (await fetch(serve.ready.metrics)).text();
      return [...text.matchAll(/^mockfleet_rank_restarts_total\{[^}]*\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    };
    const waitRestarts = async (n: number): Promise<void> => {
      const end = Date.now() + 20_000;
      while ((await restarts()) < n) {
        assert.ok(Date.now() < end, `restart ${n} not seen`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await new Promise((r) => setTimeout(r, 300));
    await fault(0, 'throw');
    await waitRestarts(1);
    await new Promise((r) => setTimeout(r, 300));
    await fault(1, 'exit');
    await waitRestarts(2);
    await new Promise((r) => setTimeout(r, 300));
    await fault(0, 'throw');
    await waitRestarts(3);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(loops);
    assert.ok(sent > 50, `load ran (${sent} requests)`);
    await new Promise((r) => setTimeout(r, 500));
    await nc.flush();

    // The router's rule: apply an event only if its id is above the last applied one.
    const last = new Map<string, bigint>();
    const index = new Map<string, Set<bigint>>();
    const clearedAt = new Map<string, number>();
    for (const m of kv) {
      for (const re of m.payload as unknown[]) {
        const e = checkRouterEvent(re);
        const k = `${e.worker}/${e.dp}`;
        const prev = last.get(k);
        assert.ok(prev === undefined || e.id > prev, `${k}: event_id ${e.id} after ${prev} is not strictly increasing`);
        last.set(k, e.id);
        const set = index.get(k) ?? new Set<bigint>();
        index.set(k, set);
        if (e.data === 'cleared') {
          set.clear();
          clearedAt.set(k, (clearedAt.get(k) ?? 0) + 1);
          continue;
        }
        const d = e.data as Record<string, Record<string, unknown>>;
        if (d['stored'] !== undefined) for (const b of d['stored']['blocks'] as Array<Record<string, bigint>>) set.add(BigInt(b['block_hash']!));
        else for (const h of d['removed']!['block_hashes'] as bigint[]) set.delete(BigInt(h));
      }
    }
    const worker = serve.ready.worker_ids[0]!;
    assert.equal(clearedAt.get(`${worker}/0`), 2, 'rank 0 announced both restarts with AllBlocksCleared');
    assert.equal(clearedAt.get(`${worker}/1`), 1, 'rank 1 announced its restart');
    const counters = new Map<string, number>();
    for (const m of fpm) {
      const p = m.payload as Record<string, unknown>;
      const k = `${String(p['worker_id'])}/${String(p['dp_rank'])}`;
      const c = Number(p['counter_id']);
      const prev = counters.get(k);
      assert.ok(prev === undefined || c > prev, `${k}: FPM counter_id ${c} after ${prev} is not strictly increasing`);
      counters.set(k, c);
    }
    assert.equal(counters.size, 2);
    const cached = await inactiveBlocks(serve.ready.metrics);
    assert.equal(cached.size, 2);
    let total = 0;
    for (const [k, n] of cached) {
      assert.equal(index.get(k)?.size ?? 0, n, `consumer index of ${k} = the rank's cached blocks`);
      total += n;
    }
    assert.ok(total > 0, 'something is cached after the run');
  } finally {
    await nc.close();
    assert.equal(await serve.stop(), 0, serve.stderr());
    await nats.stop();
  }
});
