import { test } from 'node:test';
import assert from 'node:assert/strict';
import yargs from 'yargs';
import { HTTP_FLAGS, httpOptionsFromArgv } from '../../src/http/flags.js';
import { InvalidConfigError } from '../../src/util/errors.js';

const FIXTURE = new URL('../../../test/fixtures/tiny-bpe', import.meta.url).pathname;

async function parse(args: string[]): Promise<Record<string, unknown>> {
  return (await yargs(args).options(HTTP_FLAGS).strict().parseAsync()) as Record<string, unknown>;
}

test('http flags - parsed flags become HttpOptions', async () => {
  const argv = await parse(['--port', '0', '--host', '0.0.0.0', '--api-key', 'k', '--served-model-name', 'a', 'b',
    '--max-model-len', '2048', '--failure-injection-rate', '12.5', '--failure-types', 'rate_limit,server_error', '--max-body-bytes', '1000',
    '--tokenizer', FIXTURE]);
  const o = await httpOptionsFromArgv(argv);
  assert.equal(o.port, 0);
  assert.equal(o.host, '0.0.0.0');
  assert.equal(o.apiKey, 'k');
  assert.deepEqual(o.servedModelNames, ['a', 'b']);
  assert.equal(o.maxModelLen, 2048);
  assert.equal(o.failureRate, 12.5);
  assert.deepEqual(o.failureTypes, ['rate_limit', 'server_error']);
  assert.equal(o.maxBodyBytes, 1000);
  assert.equal(o.tokenizer?.name, 'hf:tiny-bpe');
});

test('http flags - defaults give the word tokenizer, port 8000 and no api key', async () => {
  const o = await httpOptionsFromArgv(await parse(['--model', 'm1']));
  assert.equal(o.port, 8000);
  assert.equal(o.host, '127.0.0.1');
  assert.equal(o.apiKey, null);
  assert.deepEqual(o.servedModelNames, ['m1'], '--model names the served model when --served-model-name is absent');
  assert.equal(o.failureRate, 0);
  assert.equal(o.tokenizer?.name, 'word');
});

test('http flags - invalid values raise InvalidConfigError naming the flag', async () => {
  const cases: [string[], string][] = [
    [['--port', '70000'], '--port'],
    [['--port', 'abc'], '--port'],
    [['--failure-rate', '150'], '--failure-rate'],
    [['--failure-types', 'rate_limit,meteor'], '--failure-types'],
    [['--max-model-len', '1'], '--max-model-len'],
    [['--max-body-bytes', '0'], '--max-body-bytes'],
    [['--tokenizer', '/nonexistent/tokenizer.json'], '--tokenizer'],
    [['--api-key', ''], '--api-key'],
  ];
  for (const [args, flag] of cases) {
    await assert.rejects(httpOptionsFromArgv(await parse(args)), (err: unknown) => err instanceof InvalidConfigError && err.field === flag, args.join(' '));
  }
  await assert.rejects(httpOptionsFromArgv({ seed: 'x' }), (err: unknown) => err instanceof InvalidConfigError && err.field === '--seed');
});
