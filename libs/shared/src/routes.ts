import { publicUrl, type Config } from './config';

/**
 * Preview URLs are `<public base>/p/<sessionId>/...` everywhere: the local edge,
 * the container's routing middleware and Vite's `base` all agree on this path.
 */
export const PREVIEW_PREFIX = '/p/';

export const previewPathOf = (sessionId: string) => `${PREVIEW_PREFIX}${sessionId}/`;

export const previewUrlOf = (config: Config, sessionId: string) => `${publicUrl(config)}${previewPathOf(sessionId)}`;

/** The session id a request path is for, or null when it is not a preview path. */
export function sessionIdOfPath(path: string): string | null {
  if (!path.startsWith(PREVIEW_PREFIX)) return null;
  const id = path.slice(PREVIEW_PREFIX.length).split(/[/?#]/, 1)[0];
  return id ? decodeURIComponentSafe(id) : null;
}

function decodeURIComponentSafe(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
