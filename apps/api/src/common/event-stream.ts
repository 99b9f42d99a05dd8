import type { ServerResponse } from 'node:http';

/**
 * Starts a Server-Sent Events response: no caching or buffering on the way
 * (proxies such as nginx hold back a response without `x-accel-buffering: no`),
 * and the delay the client waits before it reconnects.
 */
export function startEventStream(res: ServerResponse, retryMs: number, status = 200, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    ...headers,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.write(`retry: ${retryMs}\n\n`);
}
