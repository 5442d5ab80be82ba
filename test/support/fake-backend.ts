/**
 * Deterministic in-process Backend for HTTP tests. Honours the Backend contract:
 * tokens arrive in batches through onTokens on later event-loop turns (setImmediate ticks), in a
 * borrowed buffer that is overwritten after every call; onFinish runs exactly once; abort() is
 * idempotent and is followed by onFinish('abort') on a later turn; submit throws OverloadedError
 * when `maxLive` requests are already live.
 *
 * Generated token i of the k-th submitted request (k from 0) has id 1000 + ((7k + i) mod 1000);
 * a request with a `seed` gets generatedTokenId(vocabulary, seed, i) like a real rank, with the
 * vocabulary of `generatedVocabulary` (startFakeServer: the server's tokenizer's).
 */
import type {
  Backend, GenerateCallbacks, GenerateFinish, GenerateHandle, GenerateRequest, RankInfo,
} from '../../src/cluster/backend.js';
import { startHttpServer } from '../../src/http/server.js';
import type { HttpOptions } from '../../src/http/options.js';
import type { HttpServer } from '../../src/http/server.js';
import { MockfleetError, OverloadedError } from '../../src/util/errors.js';
import { generatedTokenId } from '../../src/engine/generated-tokens.js';
import { WordTokenizer } from '../../src/tokenizer/word-tokenizer.js';

export interface FakeBackendOptions {
  modelName?: string;
  numWorkers?: number;
  ranksPerWorker?: number;
  maxModelLen?: number;
  /** KV blocks per rank (of 16 tokens). Default 1024. */
  numGpuBlocks?: number;
  /** Tokens per onTokens call. Default 4. */
  tokensPerPass?: number;
  /** onTokens calls per live request per turn. Default 1. */
  passesPerTurn?: number;
  /** Live requests beyond this make submit throw OverloadedError. Default unlimited. */
  maxLive?: number;
  /** A request stops producing after this many tokens and waits for abort(). */
  stallAfter?: number;
  /** usage.prompt_tokens_details.cached_tokens the finish reports. Default 0. */
  cachedTokens?: (req: GenerateRequest) => number;
  /** Finish every request with reason 'error' and this error after its tokens. */
  failWith?: MockfleetError;
  ready?: boolean;
  /** Token ids seeded requests generate. Default: the word tokenizer's generation vocabulary. */
  generatedVocabulary?: Uint32Array;
}

interface LiveRequest {
  readonly seq: number;
  readonly req: GenerateRequest;
  readonly cb: GenerateCallbacks;
  readonly rank: number;
  generated: number;
  live: boolean;
}

export interface FinishRecord {
  readonly requestId: string;
  readonly finish: GenerateFinish;
}

/** Offset at which tokens are placed in the borrowed buffer, so consumers must honour `start`. */
const BORROWED_OFFSET = 3;

export class FakeBackend implements Backend {
  readonly modelName: string;
  readonly numWorkers: number;
  readonly dataParallelSize: number;
  readonly numRanks: number;
  readonly blockSize = 16;
  readonly numGpuBlocks: number;
  readonly maxModelLen: number;
  readonly metricsContentType = 'text/plain; version=0.0.4; charset=utf-8';

  ready: boolean;
  /** Every accepted request, in submit order (prompt tokens copied). */
  readonly submitted: GenerateRequest[] = [];
  readonly finishes: FinishRecord[] = [];
  abortCalls = 0;
  /** Turns in which at least one onTokens call happened. */
  deliveryTurns = 0;
  onTokensCalls = 0;
  readonly metricsCalls: (number | undefined)[] = [];

  private readonly opts: Required<Omit<FakeBackendOptions, 'stallAfter' | 'failWith' | 'maxLive' | 'generatedVocabulary'>> & FakeBackendOptions;
  private readonly vocabulary: Uint32Array;
  private readonly live: LiveRequest[] = [];
  private readonly borrowed: Uint32Array;
  private ticking = false;
  private nextRank = 0;
  private idleWaiters: (() => void)[] = [];
  private pendingAbortFinishes = 0;

  constructor(opts: FakeBackendOptions = {}) {
    this.opts = {
      modelName: 'fake-model',
      numWorkers: 2,
      ranksPerWorker: 2,
      maxModelLen: 4096,
      numGpuBlocks: 1024,
      tokensPerPass: 4,
      passesPerTurn: 1,
      cachedTokens: () => 0,
      ready: true,
      ...opts,
    };
    this.modelName = this.opts.modelName;
    this.numWorkers = this.opts.numWorkers;
    this.dataParallelSize = this.opts.ranksPerWorker;
    this.numRanks = this.opts.numWorkers * this.opts.ranksPerWorker;
    this.maxModelLen = this.opts.maxModelLen;
    this.numGpuBlocks = this.opts.numGpuBlocks;
    this.ready = this.opts.ready;
    this.borrowed = new Uint32Array(BORROWED_OFFSET + this.opts.tokensPerPass);
    this.vocabulary = opts.generatedVocabulary ?? new WordTokenizer().generationVocabulary();
  }

  get liveCount(): number {
    return this.live.length;
  }

  /** Resolves once no request is live (every onFinish delivered). */
  whenIdle(): Promise<void> {
    if (this.live.length === 0 && this.pendingAbortFinishes === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  isReady(): boolean {
    return this.ready;
  }

  ranks(): readonly RankInfo[] {
    const out: RankInfo[] = [];
    for (let r = 0; r < this.numRanks; r++) {
      const workerIndex = Math.floor(r / this.opts.ranksPerWorker);
      out.push({ rank: r, workerIndex, dpRank: r % this.opts.ranksPerWorker, workerId: BigInt(workerIndex + 1), cpu: null, tid: null });
    }
    return out;
  }

  submit(req: GenerateRequest, cb: GenerateCallbacks): GenerateHandle {
    if (this.opts.maxLive !== undefined && this.live.length >= this.opts.maxLive) {
      throw new OverloadedError(`fake backend: ${this.live.length} requests already live (max ${this.opts.maxLive})`);
    }
    const rank = this.pickRank(req);
    const entry: LiveRequest = { seq: this.submitted.length, req, cb, rank, generated: 0, live: true };
    this.submitted.push({ ...req, promptTokens: req.promptTokens.slice() });
    this.live.push(entry);
    this.schedule();
    return {
      rank,
      abort: () => this.abort(entry),
    };
  }

  async metrics(workerIndex?: number): Promise<string> {
    this.metricsCalls.push(workerIndex);
    const label = workerIndex === undefined ? 'all' : String(workerIndex);
    return `# TYPE fake_requests counter\nfake_requests_total{worker="${label}"} ${this.submitted.length}\n`;
  }

  private pickRank(req: GenerateRequest): number {
    if (req.pinnedRank !== undefined) return req.pinnedRank;
    const per = this.opts.ranksPerWorker;
    const r = this.nextRank++;
    if (req.workerIndex !== undefined) return req.workerIndex * per + (r % per);
    return r % this.numRanks;
  }

  private abort(entry: LiveRequest): void {
    this.abortCalls++;
    if (!entry.live) return;
    entry.live = false;
    this.live.splice(this.live.indexOf(entry), 1);
    this.pendingAbortFinishes++;
    setImmediate(() => {
      this.pendingAbortFinishes--;
      this.finish(entry, 'abort');
    });
  }

  private finish(entry: LiveRequest, reason: GenerateFinish['reason']): void {
    const finish: GenerateFinish = {
      reason,
      rank: entry.rank,
      promptTokens: entry.req.promptTokens.length,
      completionTokens: entry.generated,
      cachedTokens: this.opts.cachedTokens(entry.req),
      ...(reason === 'error' && this.opts.failWith !== undefined ? { error: this.opts.failWith } : {}),
    };
    this.finishes.push({ requestId: entry.req.requestId, finish });
    entry.cb.onFinish(finish);
    this.maybeIdle();
  }

  private maybeIdle(): void {
    if (this.live.length > 0 || this.pendingAbortFinishes > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private schedule(): void {
    if (this.ticking) return;
    this.ticking = true;
    setImmediate(() => this.tick());
  }

  private tick(): void {
    this.ticking = false;
    let delivered = false;
    let progressing = false;
    const snapshot = this.live.slice();
    for (const e of snapshot) {
      for (let p = 0; p < this.opts.passesPerTurn && e.live; p++) {
        const limit = this.opts.stallAfter === undefined ? e.req.maxTokens : Math.min(this.opts.stallAfter, e.req.maxTokens);
        const count = Math.min(this.opts.tokensPerPass, limit - e.generated);
        if (count <= 0) break;
        const seed = e.req.seed;
        for (let i = 0; i < count; i++) {
          this.borrowed[BORROWED_OFFSET + i] = seed === undefined
            ? 1000 + ((7 * e.seq + e.generated + i) % 1000)
            : generatedTokenId(this.vocabulary, seed, e.generated + i);
        }
        e.generated += count;
        this.onTokensCalls++;
        delivered = true;
        e.cb.onTokens(this.borrowed, BORROWED_OFFSET, count);
        this.borrowed.fill(0);
      }
      if (!e.live) continue;
      if (e.generated >= e.req.maxTokens) {
        e.live = false;
        this.live.splice(this.live.indexOf(e), 1);
        this.finish(e, this.opts.failWith === undefined ? 'length' : 'error');
      } else if (this.opts.stallAfter === undefined || e.generated < this.opts.stallAfter) {
        progressing = true;
      }
    }
    if (delivered) this.deliveryTurns++;
    if (progressing) this.schedule();
  }
}

/** A FakeBackend behind a real HTTP server on a free loopback port. */
export async function startFakeServer(
  backendOpts: FakeBackendOptions = {},
  httpOpts: HttpOptions = {},
): Promise<{ backend: FakeBackend; server: HttpServer; url: string }> {
  const vocabulary = backendOpts.generatedVocabulary ?? httpOpts.tokenizer?.generationVocabulary();
  const backend = new FakeBackend(vocabulary === undefined ? backendOpts : { ...backendOpts, generatedVocabulary: vocabulary });
  const server = await startHttpServer(backend, { port: 0, ...httpOpts });
  return { backend, server, url: server.url };
}
