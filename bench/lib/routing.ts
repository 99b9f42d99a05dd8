import autocannon from 'autocannon';
import { unixSocketOf } from '@velocity/runtime';

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
 * Where to connect for a URL, and the Host to send (`host`, else the URL's): a
 * preview's origin (`<routeId>.localhost:<port>`) is loopback, as browsers
 * resolve it, which autocannon's resolver does not know; a machine on a Unix
 * socket (`http://unix:<socket>:<path>`) is its socket.
 */
export function connectionOf(url: string, host?: string): { url: string; host?: string; socketPath?: string } {
  const unix = unixSocketOf(url);
  if (unix) return { url: `http://localhost${unix.path}`, host, socketPath: unix.socketPath };
  const parsed = new URL(url);
  if (!parsed.hostname.endsWith('.localhost')) return { url, host };
  const previewHost = parsed.host;
  parsed.hostname = '127.0.0.1';
  return { url: parsed.toString(), host: host ?? previewHost };
}

/** autocannon against one URL (with `host` as its Host); rps is the mean of its per-second samples. */
export async function load(url: string, options: { connections: number; durationS: number; host?: string }): Promise<LoadResult> {
  const target = connectionOf(url, options.host);
  const result = await autocannon({
    url: target.url,
    ...(target.socketPath ? { socketPath: target.socketPath } : {}),
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
