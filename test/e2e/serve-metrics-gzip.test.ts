/**
 * /metrics compression end to end against a real serve: gzip negotiated from Accept-Encoding
 * (one gzip member that Prometheus, curl and Node all read), identity otherwise, promtool-clean,
 * a real Prometheus scraping it, and a client that leaves mid-scrape.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { startServe } from '../support/serve-process.js';
import type { ServeProcess } from '../support/serve-process.js';
import { startPrometheus } from '../support/prometheus.js';

const RANKS = 256;
let serve: ServeProcess;

before(async () => {
  serve = await startServe(['--num-workers', String(RANKS), '--speedup-ratio', '0'], 60_000);
});

after(async () => {
  assert.equal(await serve.stop(), 0, serve.stderr());
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** GET without any automatic decompression (the body as sent). */
function get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

function promtoolProblems(text: string): string[] {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', maxBuffer: 1 << 28 });
  // vLLM's own names contain ':' and vllm:iteration_tokens_total is a histogram ending in _total.
  return `${r.stdout}${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l.length > 0).filter(
    (l) => !/^vllm:\S+ metric names should not contain ':'$/.test(l) && !/^vllm:iteration_tokens_total non-counter metrics should not have "_total" suffix$/.test(l),
  );
}

/** Series names and labels (values and process-level lines move between scrapes). */
function series(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('process_') && !l.startsWith('nodejs_'))
    .map((l) => l.slice(0, l.lastIndexOf(' ')));
}

test('serve metrics - gzip when Accept-Encoding allows it, identity otherwise; same series, promtool-clean', async () => {
  const url = serve.ready.metrics;
  const gz = await get(url, { 'accept-encoding': 'gzip' });
  assert.equal(gz.status, 200);
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.equal(gz.headers['vary'], 'Accept-Encoding');
  assert.equal(Number(gz.headers['content-length']), gz.body.length);
  const decoded = gunzipSync(gz.body).toString('utf8');
  assert.deepEqual(promtoolProblems(decoded), []);
  assert.equal([...decoded.matchAll(/^vllm:num_requests_running\{/gm)].length, RANKS);
  assert.ok(gz.body.length * 10 < Buffer.byteLength(decoded), `compressed ${gz.body.length} of ${Buffer.byteLength(decoded)} bytes`);

  const plain = await get(url);
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(plain.headers['vary'], 'Accept-Encoding');
  assert.equal(Number(plain.headers['content-length']), plain.body.length);
  assert.deepEqual(series(plain.body.toString('utf8')), series(decoded));

  for (const [ae, gzip] of [['gzip;q=0', false], ['*', true], ['br, gzip;q=0.5', true], ['identity', false]] as const) {
    const r = await get(url, { 'accept-encoding': ae });
    assert.equal(r.headers['content-encoding'], gzip ? 'gzip' : undefined, `Accept-Encoding: ${ae}`);
  }
  // OpenMetrics is compressed the same way.
  const om = await get(url, { accept: 'application/openmetrics-text; version=1.0.0', 'accept-encoding': 'gzip' });
  assert.match(om.headers['content-type'] ?? '', /^application\/openmetrics-text/);
  assert.ok(gunzipSync(om.body).toString('utf8').endsWith('# EOF\n'));
});

test('serve metrics - curl --compressed reads the whole body (one gzip member)', () => {
  const r = spawnSync('curl', ['-sS', '--compressed', '--max-time', '20', serve.ready.metrics], { encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal([...r.stdout.matchAll(/^vllm:num_requests_running\{/gm)].length, RANKS);
  assert.match(r.stdout, /^process_cpu_user_seconds_total /m, 'the last family arrived');
});

test('serve metrics - a client that leaves mid-scrape breaks nothing', async () => {
  const url = new URL(serve.ready.metrics);
  // Identity is streamed piece by piece (~12 MB here): leave after the first piece.
  await new Promise<void>((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
  });
  // gzip: gone before the answer was written.
  const req = http.get(url, { agent: false, headers: { 'accept-encoding': 'gzip' } });
  req.on('error', () => undefined);
  setImmediate(() => req.destroy());
  const gz = await get(url.href, { 'accept-encoding': 'gzip' });
  assert.equal(gz.status, 200);
  const text = gunzipSync(gz.body).toString('utf8');
  assert.equal([...text.matchAll(/^vllm:num_requests_running\{/gm)].length, RANKS);
  const plain = await get(url.href);
  assert.deepEqual(series(plain.body.toString('utf8')), series(text));
});

test('serve metrics - a real Prometheus scrapes the gzip endpoint', async () => {
  const prom = await startPrometheus(serve.ready.metrics, 1);
  try {
    const t = await prom.waitUp(30_000);
    assert.equal(t.lastError, '');
    // The first scrape's samples become queryable a moment after the target turns up.
    const deadline = Date.now() + 15_000;
    let running: number | null = null;
    while (Date.now() < deadline && running !== RANKS) {
      running = await prom.query('count(vllm:num_requests_running)');
      if (running !== RANKS) await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(running, RANKS);
    assert.equal(await prom.query('count(vllm:time_to_first_token_seconds_bucket{le="+Inf"})'), RANKS);
    assert.equal(await prom.query('max(scrape_samples_scraped)') !== null, true);
  } finally {
    await prom.stop();
  }
});
