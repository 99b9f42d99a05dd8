import autocannon from 'autocannon';

export interface LoadResult {
  url: string;
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
}

/**
 * Where to connect for a URL, and the Host to send: a preview's origin
 * (`<routeId>.localhost:<port>`) is loopback, as browsers resolve it, which
 * autocannon's resolver does not know.
 */
export function connectionOf(url: string): { url: string; host?: string } {
  const parsed = new URL(url);
  if (!parsed.hostname.endsWith('.localhost')) return { url };
  const host = parsed.host;
  parsed.hostname = '127.0.0.1';
  return { url: parsed.toString(), host };
}

/** autocannon against one URL; rps is the mean of its per-second samples. */
export async function load(url: string, options: { connections: number; durationS: number }): Promise<LoadResult> {
  const target = connectionOf(url);
  const result = await autocannon({
    url: target.url,
    ...(target.host ? { headers: { host: target.host } } : {}),
    connections: options.connections,
    duration: options.durationS,
    timeout: 10,
  });
  return {
    url,
    rps: result.requests.mean,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total ?? 0,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}
