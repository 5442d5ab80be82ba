/**
 * Small OpenAI-compatible SSE server for load-generator tests. Each completion request gets a
 * behaviour from `behave(index, body)`: stream normally, answer an HTTP error, cut the connection
 * after some chunks, or never answer. Received bodies are kept for assertions.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type TestBehaviour =
  | { kind: 'ok' }
  | { kind: 'status'; status: number }
  | { kind: 'cut'; afterChunks: number }
  | { kind: 'hang' };

export interface SseTestServerOptions {
  /** Accept `prompt: [ids]` and answer POST /tokenize (default true). */
  tokenIds?: boolean;
  model?: string;
  /** Events per socket write (default 4). */
  eventsPerWrite?: number;
  behave?: (index: number, body: Record<string, unknown>) => TestBehaviour;
  /** Extra delay before the first chunk, ms (default 0). */
  firstChunkDelayMs?: number;
}

export interface SseTestServer {
  readonly url: string;
  readonly port: number;
  /** Parsed bodies of completion requests in arrival order. */
  readonly bodies: Array<Record<string, unknown>>;
  /** Resolves when `n` completion requests have arrived. */
  waitForRequests(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startSseTestServer(opts: SseTestServerOptions = {}): Promise<SseTestServer> {
  const tokenIds = opts.tokenIds ?? true;
  const model = opts.model ?? 'test-model';
  const perWrite = opts.eventsPerWrite ?? 4;
  const behave = opts.behave ?? (() => ({ kind: 'ok' }) as TestBehaviour);
  const bodies: Array<Record<string, unknown>> = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const sockets = new Set<Socket>();
  let index = 0;

  const json = (res: http.ServerResponse, status: number, obj: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(obj));
  };

  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (s: string) => {
      raw += s;
    });
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/models') return json(res, 200, { object: 'list', data: [{ id: model, object: 'model' }] });
      if (req.url === '/tokenize') return tokenIds ? json(res, 200, { count: 1, tokens: [1] }) : json(res, 404, { error: { message: 'not found' } });
      const chat = req.url === '/v1/chat/completions';
      if (req.url !== '/v1/completions' && !chat) return json(res, 404, { error: { message: `no route ${req.url}` } });
      const body = JSON.parse(raw) as Record<string, unknown>;
      if (Array.isArray(body['prompt']) && !tokenIds) return json(res, 400, { error: { message: 'token ids not supported', type: 'invalid_request_error' } });
      if (body['stream'] !== true) return json(res, 200, { id: 'x', object: 'text_completion', choices: [{ index: 0, text: 'x', finish_reason: 'length' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });
      const i = index++;
      bodies.push(body);
      for (let w = waiters.length - 1; w >= 0; w--) {
        const wt = waiters[w] as (typeof waiters)[number];
        if (bodies.length >= wt.n) {
          waiters.splice(w, 1);
          wt.resolve();
        }
      }
      const b = behave(i, body);
      if (b.kind === 'status') return json(res, b.status, { error: { message: `injected ${b.status}`, type: 'server_error' } });
      if (b.kind === 'hang') return;
      const osl = typeof body['max_tokens'] === 'number' ? body['max_tokens'] : 16;
      const prompt = body['prompt'];
      const promptTokens = Array.isArray(prompt) ? prompt.length : typeof prompt === 'string' ? prompt.split(' ').length : 0;
      const ev = (i2: number): string =>
        chat
          ? `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" t${i2}"},"finish_reason":null}]}\n\n`
          : `data: {"id":"c","object":"text_completion","choices":[{"index":0,"text":" t${i2}","finish_reason":null}]}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (chat) res.write('data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n');
      let sent = 0;
      const step = (): void => {
        if (res.destroyed) return;
        let out = '';
        for (let k = 0; k < perWrite && sent < osl; k++) {
          if (b.kind === 'cut' && sent === b.afterChunks) {
            // Destroy only once the chunks are on the wire, so the client sees a stream cut mid-way.
            res.write(out, () => res.socket?.destroy());
            return;
          }
          out += ev(sent++);
        }
        if (sent < osl) {
          res.write(out);
          setImmediate(step);
          return;
        }
        out += `data: {"id":"c","choices":[],"usage":{"prompt_tokens":${promptTokens},"completion_tokens":${osl},"total_tokens":${promptTokens + osl},"prompt_tokens_details":{"cached_tokens":0}}}\n\n`;
        res.end(out + 'data: [DONE]\n\n');
      };
      if ((opts.firstChunkDelayMs ?? 0) > 0) setTimeout(step, opts.firstChunkDelayMs);
      else setImmediate(step);
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    bodies,
    waitForRequests: (n: number) => (bodies.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))),
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const s of sockets) s.destroy();
        server.close((err) => (err === undefined ? resolve() : reject(err)));
      }),
  };
}
