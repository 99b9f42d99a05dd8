import { routeIdOfHost } from '@velocity/contracts';

/**
 * Which requests this machine serves, by their Host: a preview's origin is
 * `<routeId>.<preview domain>` and its whole path space is the project's. Its
 * own route id is served by Vite (but for Vite's dev-only endpoints that act
 * on the host); another route id is a misrouted request (`fly-replay` on
 * Fly.io, else 404); any other Host (the provider's and provisioner's
 * `127.0.0.1:<port>`, Fly's checks on the private address) reaches the
 * machine's own endpoints (`/health`, the pool claim) and nothing else.
 * A pure function so the rules are tested without a server.
 */
export type Route =
  | { kind: 'preview' }
  | { kind: 'control' }
  | { kind: 'not-found'; body: { error: 'Session not found'; routeId: string } | { error: 'Not found' } };

/** Vite's dev-server endpoints that act on the host (`/__open-in-editor` spawns `$EDITOR`): never a preview's. */
const HOST_ACTING_PATHS = /^\/+__open-in-editor(?:[/?#.]|$)/i;

/**
 * @param host the request's Host header
 * @param url the request target as received (`req.url`: path and query)
 * @param routeId this machine's route id (its session's id, or a pooled machine's own)
 */
export function routeRequest(host: string | undefined, url: string, routeId: string): Route {
  const asked = routeIdOfHost(host);
  if (asked === null) return { kind: 'control' };
  if (asked !== routeId.toLowerCase()) return { kind: 'not-found', body: { error: 'Session not found', routeId: asked } };
  if (HOST_ACTING_PATHS.test(decodePath(url))) return { kind: 'not-found', body: { error: 'Not found' } };
  return { kind: 'preview' };
}

/** The path as Vite will see it (percent-decoded), so an encoded name cannot slip past. */
function decodePath(url: string): string {
  try {
    return decodeURIComponent(url);
  } catch {
    return url;
  }
}
