import { test } from 'node:test';
import assert from 'node:assert/strict';
import { benchOptionsFromArgs } from '../../src/cli/commands/bench.js';
import type { BenchArgs } from '../../src/cli/commands/bench.js';
import { InvalidConfigError } from '../../src/util/errors.js';

const args = (p: Partial<BenchArgs>): BenchArgs => ({
  url: 'http://127.0.0.1:8000', api: 'completions', arrival: 'poisson', burstiness: 1, isl: 1024, osl: 1024, islStddev: 0, oslStddev: 0,
  sharedPrefixRatio: 0, numPrefixGroups: 1, warmup: 0, seed: 0, ignoreEos: false, timeout: 600, promptFormat: 'auto', concurrency: 8, duration: 5, ...p,
});

function throwsFlag(p: Partial<BenchArgs>, flag: string): void {
  assert.throws(() => benchOptionsFromArgs(args(p)), (err: unknown) => err instanceof InvalidConfigError && err.field === flag, `expected InvalidConfigError for ${flag}`);
}

test('loadgen cli - valid flags become bench options', () => {
  const o = benchOptionsFromArgs(args({ requestRate: 5, arrival: 'gamma', burstiness: 0.5 }));
  assert.equal(o.requestRate, 5);
  assert.equal(o.arrival, 'gamma');
  assert.equal(o.durationS, 5);
  assert.equal(o.concurrency, 8);
});

test('loadgen cli - invalid flags throw InvalidConfigError naming the flag', () => {
  throwsFlag({ concurrency: 0 }, '--concurrency');
  throwsFlag({ concurrency: 2.5 }, '--concurrency');
  throwsFlag({ requestRate: -1 }, '--request-rate');
  throwsFlag({ isl: 0 }, '--isl');
  throwsFlag({ osl: Number.NaN }, '--osl');
  throwsFlag({ sharedPrefixRatio: 1.5 }, '--shared-prefix-ratio');
  throwsFlag({ numPrefixGroups: 0 }, '--num-prefix-groups');
  throwsFlag({ burstiness: 0 }, '--burstiness');
  throwsFlag({ warmup: -1 }, '--warmup');
  throwsFlag({ timeout: 0 }, '--timeout');
  throwsFlag({ numRequests: 10 }, '--duration');
  throwsFlag({ duration: undefined }, '--duration');
  throwsFlag({ url: 'ftp://x' }, '--url');
  throwsFlag({ api: 'chat', promptFormat: 'token-ids' }, '--prompt-format');
});
