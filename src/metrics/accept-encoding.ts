/**
 * Does an Accept-Encoding header (RFC 9110 §12.5.3) allow a gzip response?
 *
 *   absent or empty        -> no (identity)
 *   gzip, x-gzip           -> yes, unless its weight is q=0
 *   *                      -> yes when gzip is not named and * has a weight above 0
 *
 * prometheus_client's gzip_accepted (exposition.py) only looks for the token "gzip" and ignores
 * weights; Prometheus itself sends exactly `Accept-Encoding: gzip`. Honouring q=0 as RFC 9110
 * asks changes nothing for either.
 */
export function acceptsGzip(header: string | readonly string[] | undefined): boolean {
  if (header === undefined) return false;
  const value = typeof header === 'string' ? header : header.join(',');
  let gzip: number | null = null;
  let star: number | null = null;
  for (const item of value.split(',')) {
    const parts = item.split(';');
    const coding = (parts[0] as string).trim().toLowerCase();
    if (coding === '') continue;
    let q = 1;
    for (let i = 1; i < parts.length; i++) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(parts[i] as string);
      if (m !== null) q = Number(m[1]);
    }
    if (!Number.isFinite(q)) q = 0;
    if (coding === 'gzip' || coding === 'x-gzip') gzip = Math.max(gzip ?? 0, q);
    else if (coding === '*') star = q;
  }
  if (gzip !== null) return gzip > 0;
  return star !== null && star > 0;
}
