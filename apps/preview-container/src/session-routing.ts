/**
 * Which requests this container serves: only its own session, under BASE_PATH.
 * A pure function so the rules are tested without a server.
 */
export type Route =
  | { kind: 'proxy' }
  | { kind: 'redirect'; status: 308; location: string }
  | { kind: 'not-found'; body: { error: 'Session not found'; sessionId: string } | { error: 'Not found' } };

/** The session path prefix every preview URL has: `/p/<sessionId>/`. */
const SESSION_PREFIX = '/p/';

/**
 * @param url the request target as received (`req.url`: path and query)
 * @param basePath this container's prefix, with leading and trailing slash
 */
export function routeRequest(url: string, basePath: string): Route {
  const queryAt = url.search(/[?#]/);
  const pathname = queryAt === -1 ? url : url.slice(0, queryAt);
  const query = queryAt === -1 ? '' : url.slice(queryAt);

  if (pathname.startsWith(basePath)) return { kind: 'proxy' };
  if (pathname === basePath.slice(0, -1)) return { kind: 'redirect', status: 308, location: basePath + query };

  if (pathname.startsWith(SESSION_PREFIX)) {
    const sessionId = pathname.slice(SESSION_PREFIX.length).split('/')[0];
    if (sessionId) return { kind: 'not-found', body: { error: 'Session not found', sessionId: decode(sessionId) } };
  }
  return { kind: 'not-found', body: { error: 'Not found' } };
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
