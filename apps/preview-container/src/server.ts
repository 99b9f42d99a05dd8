import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from '../../../libs/shared/src/logger';
import { MACHINE_KEEP_ALIVE, sendJson } from '../../../libs/shared/src/http-server';
import type { ActivityTracker } from './activity';
import { healthReport, type HealthState } from './health';
import type { ViteProxy } from './proxy';
import type { FlyReplay } from './fly-replay';
import { routeRequest } from './session-routing';

/**
 * The container's public HTTP server: the session routing by Host (see
 * session-routing.ts), then the proxy to Vite (HTTP and websocket upgrades) for
 * its own preview origin, or its own endpoints (`/health`, the pool claim) for
 * the provider. It listens before the dev server exists; until `setProxy` is
 * called, own-preview requests get 503.
 */
export interface ContainerServer {
  server: Server;
  health: HealthState;
  setProxy(proxy: ViteProxy): void;
  listen(port: number, host: string): Promise<number>;
  /** Listens on a Unix socket at `path` that any local user may connect to (a file left there by an earlier server is replaced). */
  listenOnSocket(path: string): Promise<void>;
  close(): Promise<void>;
}

export function createContainerServer(options: {
  sessionId: string;
  /** The id in this machine's preview origin (`<routeId>.<preview domain>`): its session's, or a pooled machine's own. */
  routeId: string;
  logger: Logger;
  activity?: ActivityTracker;
  /** On Fly.io: sends requests for other sessions to their machines. */
  replay?: Pick<FlyReplay, 'resolve'> | null;
  /** Requests the container itself answers on its control Host (a pooled machine's claim); true when handled. */
  control?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
}): ContainerServer {
  const { sessionId, routeId, logger, activity, replay, control } = options;
  const health: HealthState = { filesLoaded: false };
  let proxy: ViteProxy | undefined;
  /** Upgraded (websocket) sockets: no longer tracked by the HTTP server, closed by hand. */
  const upgraded = new Set<Socket>();

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      logger.error('request failed', { url: req.url, err });
      if (!res.headersSent) sendJson(res, 500, { error: 'Internal error' });
      else res.destroy();
    });
  });
  // Longer than the edge keeps an idle connection: the edge, not this server, closes it.
  server.keepAliveTimeout = MACHINE_KEEP_ALIVE.serverMs;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const route = routeRequest(req.headers.host, url, routeId);
    if (route.kind === 'control') return handleControl(req, res, url);
    if (route.kind === 'not-found' && replay && 'routeId' in route.body) {
      const found = await replay.resolve(route.body.routeId);
      if (found.kind === 'replay') {
        res.writeHead(307, { 'fly-replay': found.header, 'content-length': 0 });
        return void res.end();
      }
      if (found.kind === 'gone') return sendJson(res, 410, { error: 'Session ended', routeId: route.body.routeId });
    }
    if (route.kind === 'not-found') return sendJson(res, 404, route.body);
    activity?.touch();
    if (!proxy) {
      res.setHeader('retry-after', '1');
      return sendJson(res, 503, { error: 'Preview is starting', routeId });
    }
    await proxy(req, res, (err?: unknown) => {
      if (err) logger.warn('proxy failed', { url, err });
      if (!res.headersSent) sendJson(res, 502, { error: 'Dev server unavailable' });
    });
  }

  /** The machine's own endpoints, for the provider and the provisioner: never on a preview's origin. */
  async function handleControl(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    if (url === '/health' || url.startsWith('/health?')) {
      const report = await healthReport(health.sessionId ?? sessionId, health);
      return sendJson(res, report.status === 'ok' ? 200 : 503, report, { headOnly: req.method === 'HEAD' });
    }
    if (control && (await control(req, res))) return;
    sendJson(res, 404, { error: 'Not found' });
  }

  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const route = routeRequest(req.headers.host, req.url ?? '/', routeId);
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    if (route.kind === 'proxy' && proxy) {
      if (activity) {
        activity.connectionOpened();
        socket.once('close', () => activity.connectionClosed());
      }
      // A no-op once the proxy has subscribed itself to 'upgrade' (see proxy.ts); its own
      // handler, with the same routing filter, then does the work.
      proxy.upgrade(req, socket, head);
      return;
    }
    const status = route.kind === 'proxy' ? '503 Service Unavailable' : '404 Not Found';
    socket.on('error', () => undefined);
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });

  return {
    server,
    health,
    setProxy(p) {
      proxy = p;
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address();
          resolve(typeof address === 'object' && address ? address.port : port);
        });
      });
    },
    async listenOnSocket(path) {
      await rm(path, { force: true });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        // Any user: the machine's socket is reached through its provider's folder, by the api's user too.
        server.listen({ path, readableAll: true, writableAll: true }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of upgraded) socket.destroy();
      });
    },
  };
}
