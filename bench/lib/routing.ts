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

/** autocannon against one URL; rps is the mean of its per-second samples. */
export async function load(url: string, options: { connections: number; durationS: number }): Promise<LoadResult> {
  const result = await autocannon({ url, connections: options.connections, duration: options.durationS, timeout: 10 });
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
