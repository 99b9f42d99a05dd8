import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Agent } from 'node:http';
import { createProxyMiddleware, type RequestHandler } from 'http-proxy-middleware';
import { sendJson, type Logger } from '@velocity/runtime';
import { routeRequest } from './session-routing';
import { VITE_KEEP_ALIVE } from './dev-server';

/**
 * The proxy to the session's Vite dev server: plain HTTP and the HMR websocket,
 * for requests to this machine's own preview origin. Every answer carries
 * `Referrer-Policy: no-referrer`: the preview's URL is its capability, and a
 * link or request of the app never sends it to another site.
 */
export type ViteProxy = RequestHandler<IncomingMessage, ServerResponse>;

export function createViteProxy(target: string, routeId: string, logger: Logger): ViteProxy {
  return createProxyMiddleware<IncomingMessage, ServerResponse>({
    target,
    // Reused connections to Vite: without an agent every request opens a new one.
    agent: new Agent({ keepAlive: true, maxSockets: 64, timeout: VITE_KEEP_ALIVE.clientIdleMs }),
    ws: true,
    changeOrigin: false,
    // With `ws: true` the middleware subscribes itself to the server's 'upgrade' event on
    // the first proxied request, after which the exported `upgrade()` is a no-op. The
    // filter makes that internal handler obey the session routing too, so it never
    // proxies a websocket for another origin or a blocked path.
    pathFilter: (_path, req) => routeRequest(req.headers.host, req.url ?? '/', routeId).kind === 'proxy',
    on: {
      proxyRes: (proxyRes) => {
        proxyRes.headers['referrer-policy'] = 'no-referrer';
      },
      error: (err, req, res) => {
        logger.warn('proxy error', { url: req.url, err });
        if (isResponse(res)) {
          if (!res.headersSent) {
            sendJson(res, 502, { error: 'Dev server unavailable' });
          } else {
            res.destroy();
          }
        } else {
          (res as Socket).destroy();
        }
      },
    },
  });
}

function isResponse(res: unknown): res is ServerResponse {
  return typeof (res as ServerResponse)?.writeHead === 'function';
}
