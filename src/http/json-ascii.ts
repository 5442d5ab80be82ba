/**
 * JSON.stringify whose output is pure ASCII (non-ASCII escaped as \u00e9-style escapes, still valid JSON).
 * Everything an SSE stream writes is built from these, so streams can be written as latin1: the
 * byte length is the string length, and Node skips a UTF-8 pass over each (large, coalesced)
 * write — that pass was a fifth of the main thread's time at 256 concurrent streams.
 */
const NON_ASCII = /[\u0080-\uffff]/g;

function escape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

export function jsonAscii(value: unknown): string {
  const s = JSON.stringify(value);
  return NON_ASCII.test(s) ? s.replace(NON_ASCII, escape) : s;
}
