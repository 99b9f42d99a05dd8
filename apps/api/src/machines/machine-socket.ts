import { BeforeApplicationShutdown, Injectable } from '@nestjs/common';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { assertSocketPathFits, sendJson } from '@velocity/runtime';
import { withTimeout } from '@velocity/contracts';
import { answerClientError } from '../common/client-error';

/** The path prefixes of the api's routes for machines: all that the machine socket serves. */
const MACHINE_ROUTE = /^\/v1\/(machines|routes)\//;
/** How long shutdown waits for the machines' requests in flight (their file-change streams are ended first). */
const CLOSE_TIMEOUT_MS = 5_000;

/**
 * Whether `url` names one of the machine routes, also once decoded: no `.` or
 * `..` segment (nor an encoded one) that a static handler would resolve to a
 * path outside them.
 */
export function isMachineRoute(url: string): boolean {
  const raw = url.split('?', 1)[0];
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return false;
  }
  return MACHINE_ROUTE.test(raw) && !decoded.split(/[/\\]/).some((segment) => segment === '.' || segment === '..');
}

/**
 * The api's machine routes for local machines in a sandbox, which have no
 * network: the same app on a Unix socket (MACHINE_API_SOCKET), serving
 * `/v1/machines/*` and `/v1/routes/*` and a 404 for anything else. Any local
 * user may connect (the machines' user does); every machine route asks for a
 * machine token.
 */
@Injectable()
export class MachineSocket implements BeforeApplicationShutdown {
  private server?: Server;
  private path?: string;
  /** The socket's inode once renamed to `path`: on close, the path is removed only while it is still this one. */
  private inode?: number;

  /**
   * Listens at `path`, replacing whatever socket is there (one an api left
   * when it died, or another api's: the newest serves the machines, and
   * when it dies without closing, none does until an api starts again). It is
   * bound under a name of its own and renamed over `path`, so the path is
   * never missing, and node's unlinking of a closed socket's bound name never
   * removes a newer api's.
   */
  async listen(path: string, app: RequestListener): Promise<void> {
    assertSocketPathFits(path, 'MACHINE_API_SOCKET');
    // Nothing secret in the folder; the machines' user must pass it to reach the socket.
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    const bound = `${path}.${process.pid}`;
    assertSocketPathFits(bound, 'MACHINE_API_SOCKET (and the pid the api binds it under first)');
    await rm(bound, { force: true });
    const server = createServer(machineRoutesOnly(app));
    server.on('clientError', answerClientError);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // Any local user may connect: the machines' user does.
      server.listen({ path: bound, readableAll: true, writableAll: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await rename(bound, path);
    this.inode = (await stat(path)).ino;
    this.server = server;
    this.path = path;
  }

  /** Stops serving machines: the path goes at once (unless a newer api holds it), then the server closes. */
  async close(): Promise<void> {
    const { server, path } = this;
    if (!server || !path) return;
    this.server = undefined;
    if ((await stat(path).catch(() => null))?.ino === this.inode) await rm(path, { force: true });
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    await withTimeout(closed, CLOSE_TIMEOUT_MS, 'the machine socket to close').catch(() => server.closeAllConnections());
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.close();
  }
}

/**
 * Passes machine routes on to `app`, answers 404 to anything else. The Host
 * header is set to one that names no preview: the edge in `app` sends a
 * preview's Host to its machine, and a machine must not reach another
 * machine through the api.
 */
export function machineRoutesOnly(app: RequestListener): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (!isMachineRoute(req.url ?? '/')) return notFound(res);
    req.headers.host = 'localhost';
    app(req, res);
  };
}

function notFound(res: ServerResponse): void {
  sendJson(res, 404, { statusCode: 404, error: 'Not Found', message: 'Only the machine routes (/v1/machines/*, /v1/routes/*) are served on this socket' });
}
