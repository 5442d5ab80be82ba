/**
 * OpenAI-style error bodies: {"error": {"message", "type", "param", "code"}}.
 * MockfleetErrors keep their status; HttpApiError supplies an OpenAI `code`, other MockfleetErrors
 * report their stable MOCKFLEET_ERR_* code. Anything else is a bug and answers 500.
 */
import { HttpApiError, MockfleetError } from '../util/errors.js';
import type { FailureType } from './options.js';

export interface ErrorReply {
  readonly status: number;
  readonly body: string;
}

export function errorReply(err: unknown): ErrorReply {
  if (err instanceof MockfleetError) {
    const code = err instanceof HttpApiError ? err.apiCode : err.code;
    return { status: err.status, body: errorJson(err.message, err.type, err.param, code) };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, body: errorJson(`internal error: ${message}`, 'server_error', null, 'internal_error') };
}

export function errorJson(message: string, type: string, param: string | null, code: string | null): string {
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
