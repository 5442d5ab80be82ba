/**
 * A trivial OpenAI-style SSE server: every POST streams `chunksPerRequest` identical completion
 * chunks, 16 events per socket write (one write per event-loop turn), then a usage chunk and
 * [DONE]. It does no other work, so it is the ceiling any node:http SSE server on this host can
 * reach (node-notes §11) and the yardstick bench/http.ts compares mockfleet serve against.
 *
 * Standalone: node dist/bench/trivial-sse-server.js [--port 0] [--chunks 1024]
 * prints `trivial-sse ready {"url":...}` on stdout.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

const EVENTS_PER_WRITE = 16;
const MODEL = 'trivial';

export interface TrivialSseServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

function event(text: string): string {
  return `data: {"id":"cmpl-trivial","object":"text_completion","created":0,"model":"${MODEL}","choices":[{"index":0,"text":"${text}","logprobs":null,"finish_reason":null}]}\n\n`;
}

export async function startTrivialSseServer(port: number, chunksPerRequest: number): Promise<TrivialSseServer> {
  const block = Buffer.from(event(' tok').repeat(EVENTS_PER_WRITE));
  const rem = chunksPerRequest % EVENTS_PER_WRITE;
  const remBlock = Buffer.from(event(' tok').repeat(rem));
  const fullBlocks = Math.floor(chunksPerRequest / EVENTS_PER_WRITE);
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model', owned_by: 'mockfleet' }] }));
      return;
    }
    let promptTokens = 0;
    let bodyLen = 0;
    req.on('data', (c: Buffer) => {
      bodyLen += c.length;
    });
    req.on('end', () => {
      if (req.url === '/tokenize') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"count":1,"max_model_len":131072,"tokens":[1]}');
        return;
      }
      // Prompt length is not parsed (that would be work); approximate from the body size.
      promptTokens = Math.round(bodyLen / 6);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const tail = Buffer.from(
        `data: {"id":"cmpl-trivial","object":"text_completion","created":0,"model":"${MODEL}","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"length"}]}\n\n` +
          `data: {"id":"cmpl-trivial","object":"text_completion","created":0,"model":"${MODEL}","choices":[],"usage":{"prompt_tokens":${promptTokens},"completion_tokens":${chunksPerRequest},"total_tokens":${promptTokens + chunksPerRequest}}}\n\n` +
          'data: [DONE]\n\n',
      );
      let sent = 0;
      const step = (): void => {
        if (res.destroyed) return;
        if (sent < fullBlocks) {
          sent++;
          if (res.write(block)) setImmediate(step);
          else res.once('drain', step);
          return;
        }
        if (rem > 0) res.write(remBlock);
        res.end(tail);
      };
      setImmediate(step);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    port: bound,
    url: `http://127.0.0.1:${bound}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err === undefined ? resolve() : reject(err)));
      }),
  };
}

function argValue(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer, got ${process.argv[i + 1]}`);
  return v;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const s = await startTrivialSseServer(argValue('--port', 0), argValue('--chunks', 1024));
  process.stdout.write(`trivial-sse ready ${JSON.stringify({ url: s.url, port: s.port })}\n`);
  const stop = (): void => {
    s.close().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`trivial-sse: close failed: ${String(err)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
