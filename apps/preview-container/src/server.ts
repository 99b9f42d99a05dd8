import { rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type Logger, MACHINE_KEEP_ALIVE, sendJson } from '@velocity/runtime';
import type { ActivityTracker } from './activity';
import { healthReport, type HealthState } from './health';
import type { DevServer } from './dev-server';
import { FLY_REPLAY_SRC_HEADER, type FlyReplay } from './fly-replay';
import { routeRequest, type Route } from './session-routing';
import { BUILD_STATE_HEADER, START_FAILED_HEADER, BUILD_STATE_PATH, RUNTIME_ERRORS_PATH, RUNTIME_REPORT_MAX_BYTES, runtimeErrorReportSchema } from '@velocity/contracts';
import { BuildTracker } from './build-state';

/**
 * The container's public HTTP server: the session routing by Host (see
 * session-routing.ts), then Vite's middlewares and HMR socket (in this same
 * server, no proxy) for its own preview origin, or its own endpoints
 * (`/health`, the pool claim) for the provider. It listens before the dev
 * server exists; until `setDevServer` is called, own-preview requests get 503.
 * Every preview answer carries `Referrer-Policy: no-referrer`: the preview's
 * URL is its capability, and a link or request of the app never sends it to
 * another site.
 */
export interface ContainerServer {
  server: Server;
  health: HealthState;
  /** The preview's build state (fed by Vite once it runs: vite-build-watch.ts), answered at BUILD_STATE_PATH. */
  build: BuildTracker;
  /** From now on the preview is answered by this dev server. */
  setDevServer(devServer: Pick<DevServer, 'handle' | 'upgrade'>): void;
  /** The dev server could not start because of the project's code: its preview answers 500 with `reason` from now on. */
  setStartFailure(reason: string): void;
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
  /** The preview's build state (a new one by default): answered at BUILD_STATE_PATH, fed the page's runtime errors and module loads. */
  build?: BuildTracker;
}): ContainerServer {
  const { sessionId, routeId, logger, activity, replay, control } = options;
  const build = options.build ?? new BuildTracker();
  const runtimeReports = windowLimit(RUNTIME_REPORTS_PER_WINDOW, RUNTIME_REPORTS_WINDOW_MS);
  const health: HealthState = { filesLoaded: false };
  let devServer: Pick<DevServer, 'handle' | 'upgrade'> | undefined;
  let startFailure: string | undefined;
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
    if (route.kind === 'not-found') {
      const reply = await misrouted(route, req);
      if (reply.replay) return void res.writeHead(reply.status, { 'fly-replay': reply.replay, 'content-length': 0 }).end();
      return sendJson(res, reply.status, reply.body);
    }
    activity?.touch();
    if (startFailure !== undefined) {
      res.setHeader(START_FAILED_HEADER, '1');
      return sendJson(res, 500, { error: "The project's dev server could not start", reason: startFailure, routeId });
    }
    if (!devServer) {
      res.setHeader('retry-after', '1');
      return sendJson(res, 503, { error: 'Preview is starting', routeId });
    }
    if (await handleDiagnostics(req, res, url, build)) return;
    // A module the page asks for (a script or a stylesheet): whether it loaded is part of the build state.
    if (isModuleLoad(req)) {
      res.setHeader(BUILD_STATE_HEADER, build.current.state);
      res.once('finish', () => build.moduleRequestFinished(url, res.statusCode));
    }
    res.setHeader('referrer-policy', 'no-referrer');
    devServer.handle(req, res, (err?: unknown) => {
      // Vite's own 404 and error middlewares answer first; this is what falls through them.
      if (err) logger.warn('dev server failed', { url, err });
      if (!res.headersSent) sendJson(res, err ? 500 : 404, err ? { error: 'Dev server failed' } : { error: 'Not found' });
    });
  }

  /**
   * The preview's own diagnostics endpoints, on its origin (the preview URL is their capability):
   * its build state, and where its page reports runtime errors (bounded in size and rate: no token
   * is needed, and all it can do is add runtime diagnostics to this one session). True when handled.
   */
  async function handleDiagnostics(req: IncomingMessage, res: ServerResponse, url: string, tracker: BuildTracker): Promise<boolean> {
    const path = url.split('?', 1)[0];
    if (path === BUILD_STATE_PATH) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, { error: 'GET only', field: 'method' }, { allow: 'GET, HEAD' });
      sendJson(res, 200, tracker.current, { headOnly: req.method === 'HEAD' });
      return true;
    }
    if (path !== RUNTIME_ERRORS_PATH) return false;
    if (req.method !== 'POST') return answer(res, 405, { error: 'POST only', field: 'method' }, { allow: 'POST' });
    if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) return answer(res, 415, { error: 'content-type: must be application/json', field: 'content-type' });
    if (!runtimeReports.take()) return answer(res, 429, { error: `At most ${RUNTIME_REPORTS_PER_WINDOW} reports every ${RUNTIME_REPORTS_WINDOW_MS / 1000} s`, field: 'body' }, { 'retry-after': '10' });
    const body = await readBody(req, RUNTIME_REPORT_MAX_BYTES);
    if (body === null) return answer(res, 413, { error: `body: larger than ${RUNTIME_REPORT_MAX_BYTES} bytes`, field: 'body' }, { connection: 'close' });
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      return answer(res, 400, { error: 'body: not valid JSON', field: 'body' });
    }
    const parsed = runtimeErrorReportSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = (issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]] : issue.path).join('.') || 'body';
      return answer(res, 400, { error: `${field}: ${issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message}`, field });
    }
    tracker.runtimeErrors(parsed.data.errors);
    res.writeHead(204, { 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).end();
    return true;
  }

  /** The machine's own endpoints, for the provider and the provisioner: never on a preview's origin. */
  async function handleControl(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    if (url === SERVING_PATH) {
      // What Fly's proxy routes by (the machine's service check): it answers its preview, or why it cannot.
      const serving = (devServer !== undefined || startFailure !== undefined) && !health.sessionEnded;
      return sendJson(res, serving ? 200 : 503, { serving }, { headOnly: req.method === 'HEAD' });
    }
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
    socket.on('error', () => undefined);
    if (route.kind === 'preview' && devServer && isViteSocket(req)) {
      if (activity) {
        activity.connectionOpened();
        socket.once('close', () => activity.connectionClosed());
      }
      devServer.upgrade(req, socket, head);
      return;
    }
    if (route.kind === 'preview') return void socket.end(rawAnswer(devServer ? 404 : 503));
    if (route.kind !== 'not-found') return void socket.end(rawAnswer(404));
    // Not upgraded: Fly's proxy replays the upgrade request itself to the machine named.
    misrouted(route, req).then(
      (reply) => socket.end(rawAnswer(reply.status, reply.replay)),
      (err) => {
        logger.warn('route lookup failed', { routeId: 'routeId' in route.body ? route.body.routeId : undefined, err });
        socket.end(rawAnswer(502));
      },
    );
  });

  /** The answer to a request for another route id: `fly-replay` to its machine on Fly.io, else 410 or 404. */
  async function misrouted(route: Extract<Route, { kind: 'not-found' }>, req: IncomingMessage): Promise<{ status: number; replay?: string; body: object }> {
    if (!replay || !('routeId' in route.body)) return { status: 404, body: route.body };
    const found = await replay.resolve(route.body.routeId, headerOf(req, FLY_REPLAY_SRC_HEADER));
    if (found.kind === 'replay') return { status: 307, replay: found.header, body: {} };
    if (found.kind === 'gone') return { status: 410, body: { error: 'Session ended', routeId: route.body.routeId } };
    return { status: 404, body: route.body };
  }

  return {
    server,
    health,
    build,
    setStartFailure(reason) {
      startFailure = reason;
      health.startFailure = reason;
    },
    setDevServer(server) {
      devServer = server;
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

/** Runtime-error reports a machine takes per window, from all of its page's tabs together. */
const RUNTIME_REPORTS_PER_WINDOW = 30;
const RUNTIME_REPORTS_WINDOW_MS = 10_000;

/** A fixed-window counter: `take()` is false once `max` were taken in the current window. */
function windowLimit(max: number, windowMs: number) {
  let windowStart = 0;
  let taken = 0;
  return {
    take(): boolean {
      const now = Date.now();
      if (now - windowStart >= windowMs) {
        windowStart = now;
        taken = 0;
      }
      return ++taken <= max;
    },
  };
}

/** The only websockets a preview has: Vite's HMR socket and its ping, on `/` (the machine sets no HMR path). */
function isViteSocket(req: IncomingMessage): boolean {
  const protocol = req.headers['sec-websocket-protocol'];
  return (protocol === 'vite-hmr' || protocol === 'vite-ping') && (req.url ?? '/').split('?', 1)[0] === '/';
}

/** A request the browser makes to load a module or a stylesheet (`Sec-Fetch-Dest`, which page scripts cannot set). */
function isModuleLoad(req: IncomingMessage): boolean {
  const dest = req.headers['sec-fetch-dest'];
  return req.method === 'GET' && (dest === 'script' || dest === 'style');
}

/** The body as text, or null once it passes `maxBytes` (the rest is not read: the answer closes the connection). */
function readBody(req: IncomingMessage, maxBytes: number): Promise<string | null> {
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) return void chunks.push(chunk);
      req.off('data', onData);
      req.pause();
      resolve(null);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

/**
 * The machine's service check: 200 once it answers its own preview (Vite runs,
 * or the reason it cannot is known) and its session has not ended. `/health`
 * says more (the files, the last change) but is not what to route by: a
 * preview with a broken change still shows the user Vite's overlay.
 */
export const SERVING_PATH = '/serving';

const REASONS: Record<number, string> = { 307: 'Temporary Redirect', 404: 'Not Found', 410: 'Gone', 502: 'Bad Gateway', 503: 'Service Unavailable' };

/** An HTTP answer written on a socket that is not upgraded (an upgrade request refused or replayed). */
function rawAnswer(status: number, flyReplay?: string): string {
  return `HTTP/1.1 ${status} ${REASONS[status] ?? ''}\r\n${flyReplay ? `fly-replay: ${flyReplay}\r\n` : ''}connection: close\r\ncontent-length: 0\r\n\r\n`;
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function answer(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): true {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  sendJson(res, status, body);
  return true;
}
