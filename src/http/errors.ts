/**
 * Error bodies, {"error": {"message", "type", "param", "code"}}, in one of two formats:
 *  - `vllm` (default): vLLM's ErrorResponse/ErrorInfo — `type` "BadRequestError", "NotFoundError",
 *    "UnprocessableEntityError", "InternalServerError", "NotImplementedError", else the HTTP status
 *    phrase ("Too Many Requests", "Service Unavailable" …), and `code` the integer HTTP status
 *    (vllm/entrypoints/serve/exception_handling/error_response.py `create_error_response` and
 *    handlers/http.py `http_exception_handler`, checked in the newest stored vllm-project/vllm).
 *  - `openai`: OpenAI's — `type` invalid_request_error / rate_limit_error / server_error and a
 *    string `code` (HttpApiError's `apiCode`, or a MockfleetError's stable MOCKFLEET_ERR_* code).
 * MockfleetErrors keep their status; anything else is a bug and answers 500.
 */
import { HttpApiError, MockfleetError } from '../util/errors.js';
import type { FailureType } from './options.js';

export interface ErrorReply {
  readonly status: number;
  readonly body: string;
}

export const ERROR_FORMATS = ['vllm', 'openai'] as const;
export type ErrorFormat = (typeof ERROR_FORMATS)[number];

/** HTTP status phrases (Python's http.HTTPStatus) for the statuses mockfleet answers. */
const STATUS_PHRASES: Readonly<Record<number, string>> = {
  400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 406: 'Not Acceptable', 408: 'Request Timeout', 409: 'Conflict', 410: 'Gone',
  411: 'Length Required', 412: 'Precondition Failed', 413: 'Request Entity Too Large', 414: 'Request-URI Too Long',
  415: 'Unsupported Media Type', 416: 'Requested Range Not Satisfiable', 417: 'Expectation Failed', 418: "I'm a Teapot",
  421: 'Misdirected Request', 422: 'Unprocessable Content', 423: 'Locked', 424: 'Failed Dependency', 425: 'Too Early',
  426: 'Upgrade Required', 428: 'Precondition Required', 429: 'Too Many Requests', 431: 'Request Header Fields Too Large',
  451: 'Unavailable For Legal Reasons', 500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway',
  503: 'Service Unavailable', 504: 'Gateway Timeout', 505: 'HTTP Version Not Supported', 506: 'Variant Also Negotiates',
  507: 'Insufficient Storage', 508: 'Loop Detected', 510: 'Not Extended', 511: 'Network Authentication Required',
};

/** vLLM's ErrorInfo.type for an HTTP status. */
export function vllmErrorType(status: number): string {
  switch (status) {
    case 400: return 'BadRequestError';
    case 404: return 'NotFoundError';
    case 422: return 'UnprocessableEntityError';
    case 500: return 'InternalServerError';
    case 501: return 'NotImplementedError';
    default: return STATUS_PHRASES[status] ?? (status >= 500 ? 'InternalServerError' : 'BadRequestError');
  }
}

export function errorReply(err: unknown, format: ErrorFormat = 'vllm'): ErrorReply {
  if (err instanceof MockfleetError) {
    const code = err instanceof HttpApiError ? err.apiCode : err.code;
    return { status: err.status, body: errorJson(err.message, err.type, err.param, code, err.status, format) };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: errorJson(`internal error: ${message}`, 'server_error', null, 'internal_error', 500, format) };
}

/**
 * One error body. `type` and `code` are the OpenAI ones; the vLLM format replaces them with
 * vLLM's type for `status` and the integer status.
 */
export function errorJson(message: string, type: string, param: string | null, code: string | null, status: number, format: ErrorFormat): string {
  if (format === 'vllm') return JSON.stringify({ error: { message, type: vllmErrorType(status), param, code: status } });
  return JSON.stringify({ error: { message, type, param, code } });
}

export function badRequest(message: string, param: string | null = null): HttpApiError {
  return new HttpApiError(400, 'invalid_request_error', 'invalid_request', message, param);
}

export function contextLengthExceeded(message: string, param: string): HttpApiError {
  return new HttpApiError(400, 'invalid_request_error', 'context_length_exceeded', message, param);
}

export function modelNotFound(model: string): HttpApiError {
  return new HttpApiError(404, 'invalid_request_error', 'model_not_found', `The model \`${model}\` does not exist.`, 'model');
}

export function invalidApiKey(): HttpApiError {
  return new HttpApiError(401, 'invalid_request_error', 'invalid_api_key', 'Incorrect API key provided.');
}

/** The error an injected failure of `kind` answers with. */
export function injectedFailure(kind: FailureType, model: string): HttpApiError {
  const note = ' (injected failure)';
  switch (kind) {
    case 'rate_limit':
      return new HttpApiError(429, 'rate_limit_error', 'rate_limit_exceeded', `Rate limit reached for ${model}${note}.`);
    case 'invalid_api_key':
      return new HttpApiError(401, 'invalid_request_error', 'invalid_api_key', `Incorrect API key provided${note}.`);
    case 'context_length':
      return new HttpApiError(400, 'invalid_request_error', 'context_length_exceeded',
        `This model's maximum context length was exceeded${note}.`, 'messages');
    case 'server_error':
      return new HttpApiError(503, 'server_error', 'server_error', `The server is temporarily unavailable${note}.`);
    case 'invalid_request':
      return new HttpApiError(400, 'invalid_request_error', 'invalid_request', `Invalid request${note}.`);
    case 'model_not_found':
      return new HttpApiError(404, 'invalid_request_error', 'model_not_found', `The model \`${model}\` does not exist${note}.`, 'model');
  }
}

/** What `X-Return-Error: <status>` answers: the matching injected kind, or a generic error. */
export function forcedError(status: number, model: string): HttpApiError {
  switch (status) {
    case 400: return injectedFailure('invalid_request', model);
    case 401: return injectedFailure('invalid_api_key', model);
    case 404: return injectedFailure('model_not_found', model);
    case 429: return injectedFailure('rate_limit', model);
    case 503: return injectedFailure('server_error', model);
    default: {
      const type = status >= 500 ? 'server_error' : 'invalid_request_error';
      return new HttpApiError(status, type, `http_${status}`, `Error ${status} requested by X-Return-Error.`);
    }
  }
}
