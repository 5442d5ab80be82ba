/**
 * One-time server probes before a run: the model id (GET /v1/models) and whether /v1/completions
 * accepts token-id prompts (POST /tokenize exists, as on vLLM and mockfleet, or a 1-token request
 * with `prompt: [id]` succeeds).
 */
import type { Target } from './client.js';
import { requestJson } from './client.js';
import { TOKEN_ID_MIN, tokenIdsBody } from './workload.js';
import type { PromptFormat } from './workload.js';

const PROBE_TIMEOUT_MS = 10_000;

export interface ProbeResult {
  /** Model id to send; null when unknown (server unreachable and no --model). */
  model: string | null;
  promptFormat: PromptFormat;
  /** Human-readable notes on what was decided and why (printed on stderr). */
  notes: string[];
}

export async function probeModel(target: Target): Promise<{ model: string | null; note: string }> {
  try {
    const r = await requestJson(target, 'GET', '/v1/models', undefined, PROBE_TIMEOUT_MS);
    const data = (r.json as { data?: Array<{ id?: unknown }> } | null)?.data;
    const id = Array.isArray(data) ? data[0]?.id : undefined;
    if (r.status === 200 && typeof id === 'string') return { model: id, note: `model ${id} (first of GET /v1/models)` };
    return { model: null, note: `GET /v1/models returned HTTP ${r.status} without a model id; requests are sent without "model"` };
  } catch (err) {
    return { model: null, note: `GET /v1/models failed (${(err as Error).message}); requests are sent without "model"` };
  }
}

export async function probeTokenIds(target: Target, model: string | null): Promise<{ accepted: boolean; note: string }> {
  try {
    const tk = await requestJson(target, 'POST', '/tokenize', model === null ? { prompt: 'hello' } : { model, prompt: 'hello' }, PROBE_TIMEOUT_MS);
    if (tk.status === 200) return { accepted: true, note: 'POST /tokenize answered: sending token-id prompts' };
    const one = await requestJson(target, 'POST', '/v1/completions', JSON.parse(tokenIdsBody(model, [TOKEN_ID_MIN], 1, false, false)), PROBE_TIMEOUT_MS);
    if (one.status === 200) return { accepted: true, note: 'a 1-token token-id completion succeeded: sending token-id prompts' };
    return { accepted: false, note: `token-id prompt rejected (HTTP ${one.status}): sending text prompts, one word per intended token` };
  } catch (err) {
    return { accepted: true, note: `probe failed (${(err as Error).message}): assuming token-id prompts` };
  }
}
