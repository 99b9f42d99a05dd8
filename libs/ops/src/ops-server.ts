import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { errorMessage } from '@velocity/contracts';
import { type Logger, sendJson } from '@velocity/runtime';
import { operatorAuth, type OperatorCredentials } from './operator-auth';
import { checkReadiness, notReadyBody, type ReadinessCheck } from './readiness';

/**
 * A worker's operator server (the workers have no HTTP api of their own):
 *
 * - `GET /health`: liveness, 200 while the process answers;
 * - `GET /ready`: its checks (Redis, Postgres) each within `readyTimeoutMs`; 503 naming what failed;
 * - `GET /metrics`: its Prometheus registry, behind the operator guard (404 when no credentials are configured).
 */
export interface OpsServerOptions {
  app: string;
  host: string;
  /** 0: no server. */
  port: number;
  registry: Registry;
  credentials: OperatorCredentials;
  checks: Record<string, ReadinessCheck>;
  readyTimeoutMs: number;
  logger: Logger;
}

export interface OpsServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Starts the server; resolves null when it is off (port 0) or cannot listen (the
 * port is taken): a worker without its operator server still does its work, and
 * the log says why it has none.
 */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer | null> {
  const { app, host, port, registry, credentials, checks, readyTimeoutMs, logger } = options;
  if (port === 0) return null;
  const guard = operatorAuth(credentials);
  const started = Date.now();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const known = path === '/health' || path === '/ready' || path === '/metrics';
    if (!known) return sendJson(res, 404, { statusCode: 404, error: 'Not Found', message: `Cannot ${req.method} ${path}` });
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendJson(res, 405, { statusCode: 405, error: 'Method Not Allowed', message: `${path} answers GET only` });
    }
    if (path === '/health') return sendJson(res, 200, { status: 'ok', app, pid: process.pid, uptimeSeconds: Math.round((Date.now() - started) / 1000) });
    if (path === '/ready') {
      const report = await checkReadiness(checks, readyTimeoutMs);
      return sendJson(res, report.status === 'ready' ? 200 : 503, report.status === 'ready' ? { app, ...report } : { app, ...notReadyBody(report) });
    }
    guard(req, res, () => {
      registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
          res.end(text);
        },
        (err) => {
          logger.error('metrics: scrape failed', { err });
          sendJson(res, 500, { statusCode: 500, error: 'Internal Server Error', message: 'metrics could not be collected' });
        },
      );
    });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      logger.error('operator server error', { err });
      if (!res.headersSent) sendJson(res, 500, { statusCode: 500, error: 'Internal Server Error', message: errorMessage(err) });
      else res.destroy();
    });
  });
  // Probes and scrapes are short: do not let idle keep-alive sockets hold a shutdown.
  server.keepAliveTimeout = 5000;

  const listening = await new Promise<boolean>((resolve) => {
    server.once('error', (err) => {
      logger.error('operator server could not listen: no /metrics, /health or /ready on this process', { host, port, err });
      resolve(false);
    });
    server.listen(port, host, () => resolve(true));
  });
  if (!listening) return null;
  server.on('error', (err) => logger.error('operator server error', { err }));
  const actual = (server.address() as AddressInfo).port;
  logger.info('operator server listening', { url: `http://${host}:${actual}`, paths: ['/health', '/ready', '/metrics'] });
  return {
    port: actual,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
