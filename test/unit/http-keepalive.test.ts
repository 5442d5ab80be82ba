/**
 * Keep-alive and slow clients. The AIPerf failure mode against vLLM (uvicorn's 5 s
 * --timeout-keep-alive): a CPU-starved client reuses a pooled idle connection at the moment the
 * server closes it, and the request dies with a reset. Reproduced deterministically with a raw
 * socket that sends its next request the instant the server's FIN arrives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startFakeServer } from '../support/fake-backend.js';

const BODY = '{"prompt":"hi","max_tokens":2}';
const REQUEST = `POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY}`;

interface Exchange {
  /** Responses completely received on this one connection. */
  responses: number;
  keepAliveHeader: string | null;
  outcome: string;
}

/**
 * One connection: a first request, then, after the first response, a second request either after
 * `idleMs` or (idleMs = 'on-fin') the moment the server half-closes the connection.
 */
function reuse(port: number, idleMs: number | 'on-fin'): Promise<Exchange> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const ex: Exchange = { responses: 0, keepAliveHeader: null, outcome: '' };
    let buf = '';
    const finish = (outcome: string): void => {
      if (ex.outcome !== '') return;
      ex.outcome = outcome;
      s.destroy();
      resolve(ex);
    };
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      while (buf.includes('"usage"')) {
        ex.keepAliveHeader ??= /keep-alive: ([^\r]*)/i.exec(buf)?.[1] ?? null;
        buf = buf.slice(buf.indexOf('"usage"') + 7);
        ex.responses++;
        if (ex.responses === 2) finish('two responses');
        else if (idleMs !== 'on-fin') setTimeout(() => s.write(REQUEST), idleMs);
      }
    });
    s.on('end', () => {
      if (idleMs === 'on-fin' && ex.responses === 1) {
        // The pooled connection looked idle and usable: the client writes before it saw the FIN.
        s.write(REQUEST, () => undefined);
        setTimeout(() => finish('no response on a connection the server closed'), 300);
        return;
      }
      finish('server closed');
    });
    s.on('error', (err: NodeJS.ErrnoException) => finish(`error ${err.code ?? err.message}`));
    s.write(REQUEST);
  });
}

test('http keep-alive - a short --timeout-keep-alive reproduces the reset of a request sent as the server closes', async () => {
  const { server } = await startFakeServer({}, { timeoutKeepAliveS: 0.2 });
  try {
    const quick = await reuse(server.port, 50);
    assert.equal(quick.outcome, 'two responses', 'reused inside the timeout');
    assert.equal(quick.keepAliveHeader, 'timeout=0', 'Node announces whole seconds');
    const raced = await reuse(server.port, 'on-fin');
    assert.equal(raced.responses, 1);
    assert.notEqual(raced.outcome, 'two responses', `the request written at the close is lost (${raced.outcome})`);
  } finally {
    await server.close(0);
  }
});

test('http keep-alive - the default keeps idle pooled connections for 75 s, announced in Keep-Alive', async () => {
  const { server } = await startFakeServer({}, {});
  try {
    // Longer than the short timeout above by far (and than Node's default 5 s keep-alive once
    // Node's 1 s buffer is counted against a 0.2 s setting); still one connection.
    const idle = await reuse(server.port, 1500);
    assert.equal(idle.outcome, 'two responses');
    assert.equal(idle.keepAliveHeader, 'timeout=75');
  } finally {
    await server.close(0);
  }
});

test('http keep-alive - a slow-loris client that never finishes its headers is still cut off', async () => {
  const { server, backend } = await startFakeServer({}, { headersTimeoutMs: 300 });
  try {
    const started = Date.now();
    const result = await new Promise<{ text: string; ms: number }>((resolve) => {
      const s = net.connect(server.port, '127.0.0.1');
      let text = '';
      s.write('POST /v1/completions HTTP/1.1\r\nhost: x\r\n');
      let n = 0;
      const drip = setInterval(() => {
        if (!s.destroyed) s.write(`x-slow-${n++}: 1\r\n`);
      }, 50);
      s.on('data', (d: Buffer) => (text += d.toString('latin1')));
      s.on('close', () => {
        clearInterval(drip);
        resolve({ text, ms: Date.now() - started });
      });
      s.on('error', () => undefined);
    });
    assert.match(result.text, /^HTTP\/1\.1 408 /, 'answered 408 before the headers ended');
    assert.match(result.text, /"code":408/, 'in the vLLM error shape');
    assert.ok(result.ms < 3000, `cut off after ${result.ms} ms`);
    assert.equal(backend.submitted.length, 0);
  } finally {
    await server.close(0);
  }
});
