/**
 * Error classes with a stable `code`. Every error mockfleet raises on purpose is one of these;
 * the HTTP layer maps `status` to an OpenAI-style error body, the CLI maps usage errors to exit 2.
 */
export class MockfleetError extends Error {
  readonly code: string;
  /** HTTP status this error maps to when it reaches a client. */
  readonly status: number;
  /** OpenAI error `type` (invalid_request_error, rate_limit_error, server_error, …). */
  readonly type: string;
  /** The offending field or parameter, when there is one. */
  readonly param: string | null;

  constructor(code: string, message: string, opts: { status?: number; type?: string; param?: string | null; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = opts.status ?? 500;
    this.type = opts.type ?? 'server_error';
    this.param = opts.param ?? null;
  }
}

/** A configuration value (flag, file key, env var, engine arg) is invalid. Message names the field. */
export class InvalidConfigError extends MockfleetError {
  readonly field: string;
  constructor(field: string, message: string) {
    super('MOCKFLEET_ERR_INVALID_CONFIG', `${field}: ${message}`, { status: 400, type: 'invalid_request_error', param: field });
    this.field = field;
  }
}

/** A client request is malformed or cannot be served as asked. */
export class InvalidRequestError extends MockfleetError {
  constructor(message: string, param: string | null = null, status = 400, code = 'MOCKFLEET_ERR_INVALID_REQUEST') {
    super(code, message, { status, type: 'invalid_request_error', param });
  }
}

/** The perf model could not predict a pass time (never defaulted to 0). */
export class PerfModelError extends MockfleetError {
  constructor(message: string, cause?: unknown) {
    super('MOCKFLEET_ERR_PERF_MODEL', message, { status: 500, type: 'server_error', cause });
  }
}

/** A simulated rank thread died while the request was in flight. */
export class RankFailedError extends MockfleetError {
  readonly rank: number;
  constructor(rank: number, message: string, cause?: unknown) {
    super('MOCKFLEET_ERR_RANK_FAILED', `rank ${rank}: ${message}`, { status: 503, type: 'server_error', cause });
    this.rank = rank;
  }
}

/** Too many waiting requests: the caller should retry later. */
export class OverloadedError extends MockfleetError {
  constructor(message: string) {
    super('MOCKFLEET_ERR_OVERLOADED', message, { status: 429, type: 'rate_limit_error' });
  }
}

/** A trace file line cannot be used. Message names file, line and field. */
export class TraceFormatError extends MockfleetError {
  constructor(file: string, line: number, field: string | null, message: string) {
    super('MOCKFLEET_ERR_TRACE_FORMAT', `${file}:${line}: ${field === null ? '' : `${field}: `}${message}`, { status: 400, type: 'invalid_request_error', param: field });
  }
}

/**
 * An error the HTTP frontend answers with an OpenAI error `code` of its own (invalid_api_key,
 * model_not_found, context_length_exceeded, …); `apiCode` is what clients see in `error.code`.
 */
export class HttpApiError extends MockfleetError {
  readonly apiCode: string;
  constructor(status: number, type: string, apiCode: string, message: string, param: string | null = null) {
    super('MOCKFLEET_ERR_HTTP_API', message, { status, type, param });
    this.apiCode = apiCode;
  }
}

/** The shared event publisher failed (thread crash, corrupt ring, NATS client error). */
export class PublisherError extends MockfleetError {
  constructor(message: string, cause?: unknown) {
    super('MOCKFLEET_ERR_PUBLISHER', message, { status: 500, type: 'server_error', cause });
  }
}
