import { publicUrl, type Config } from './config';
import { isUuid } from './uuid';

/**
 * Each preview is served at the root of an origin of its own,
 * `<scheme>://<routeId>.<PREVIEW_DOMAIN>/`: a preview's scripts share no
 * storage, cookies or DOM access with the api's origin, the preview page or any
 * other preview, and apps that use root paths (`/icons.svg`, `fetch('/api')`,
 * a router without a basename) work as they do anywhere. The edge, the
 * machine's own server and the provisioner's verification route by the Host.
 */

/** The preview domain, `host[:port]`: PREVIEW_DOMAIN, else `localhost` on PUBLIC_URL's port. */
export function previewDomainOf(config: Config): string {
  if (config.PREVIEW_DOMAIN) return config.PREVIEW_DOMAIN;
  const { port } = new URL(publicUrl(config));
  return port ? `localhost:${port}` : 'localhost';
}

/** The origin a route id's preview is served from, without a trailing slash. */
export function previewOriginOf(config: Config, routeId: string): string {
  const { protocol } = new URL(publicUrl(config));
  return `${protocol}//${routeId.toLowerCase()}.${previewDomainOf(config)}`;
}

/** The URL a client is handed: the root of the preview's own origin. */
export const previewUrlOf = (config: Config, routeId: string) => `${previewOriginOf(config, routeId)}/`;

/** The hostname of a Host header (no port, lower case, no trailing dot); '' when there is none. */
export function hostnameOf(host: string | undefined): string {
  if (!host) return '';
  const withoutPort = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '');
  return withoutPort.toLowerCase().replace(/\.$/, '');
}

/**
 * What a Host header names: a preview (`<routeId>.<domain host>`, any port: a
 * proxy in front may change it), something else under the preview domain
 * (`foreign`, never the api's own content), or neither.
 */
export type HostRoute = { kind: 'preview'; routeId: string } | { kind: 'foreign'; label: string } | { kind: 'other' };

export function routeOfHost(host: string | undefined, previewDomain: string): HostRoute {
  const hostname = hostnameOf(host);
  const suffix = `.${hostnameOf(previewDomain)}`;
  if (!hostname.endsWith(suffix)) return { kind: 'other' };
  const label = hostname.slice(0, -suffix.length);
  return isUuid(label) ? { kind: 'preview', routeId: label } : { kind: 'foreign', label };
}

/** The route id a Host names when its first label is one, whatever the domain (a machine knows only its own id). */
export function routeIdOfHost(host: string | undefined): string | null {
  const label = hostnameOf(host).split('.', 1)[0];
  return isUuid(label) ? label : null;
}

/** Old preview links, `/p/<routeId>/...` on the api's origin, are redirected to the preview's origin. */
export const LEGACY_PREVIEW_PREFIX = '/p/';

/** The route id and the rest of an old-style preview path (`/p/<id>/rest?q` → `{ routeId, rest: '/rest?q' }`), or null. */
export function legacyPreviewPath(path: string): { routeId: string; rest: string } | null {
  if (!path.startsWith(LEGACY_PREVIEW_PREFIX)) return null;
  const after = path.slice(LEGACY_PREVIEW_PREFIX.length);
  const end = after.search(/[/?#]/);
  const id = end === -1 ? after : after.slice(0, end);
  const rest = end === -1 ? '/' : after[end] === '/' ? after.slice(end) : `/${after.slice(end)}`;
  return id ? { routeId: decodeURIComponentSafe(id), rest } : null;
}

function decodeURIComponentSafe(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}
