import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonAscii } from '../../src/http/json-ascii.js';
import { startFakeServer } from '../support/fake-backend.js';

test('http - jsonAscii escapes every non-ASCII character and stays valid JSON', () => {
  for (const v of ['plain', 'modèle-ü', '日本語 😀', { a: 'Ωmega', b: [1, 'ß'] }, 'quote " and \\ slash']) {
    const s = jsonAscii(v);
    assert.ok(/^[\x00-\x7f]*$/.test(s), `ASCII only: ${s}`);
    assert.deepEqual(JSON.parse(s), v);
  }
});

test('http - a stream for a non-ASCII model name arrives intact (latin1 writes of escaped JSON)', async () => {
  const name = 'modèle-日本-😀';
  const { server, url } = await startFakeServer({ modelName: name }, { servedModelNames: [name] });
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: name, messages: [{ role: 'user', content: 'hé' }], max_tokens: 5, stream: true, stream_options: { include_usage: true } }),
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(/^[\x00-\x7f]*$/.test(text), 'the stream bytes are ASCII');
    const events = text.split('\n\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)) as { model: string; usage?: { completion_tokens: number } });
    assert.ok(events.length >= 7);
    for (const e of events) assert.equal(e.model, name);
    assert.equal(events.at(-1)?.usage?.completion_tokens, 5);
    assert.ok(text.endsWith('data: [DONE]\n\n'));
  } finally {
    await server.close();
  }
});
