import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

/**
 * A server on a Unix socket, as a base URL: `http://unix:<socket path>:`, the
 * `unix:SOCKET:PATH` convention of got and request, so `${base}/health` names
 * the path `/health` on that socket. The socket path may not hold a colon.
 */
export function unixSocketUrl(socketPath: string): string {
  if (socketPath.includes(':')) throw new Error(`A Unix socket path for a URL may not hold ":": ${socketPath}`);
  return `http://unix:${socketPath}:`;
}

/** The socket and request path of a `http://unix:<socket>:<path>` URL; null for any other URL. */
export function unixSocketOf(url: string): { socketPath: string; path: string } | null {
  // One pattern, as got parses it: the socket path ends at the first colon after `unix:`.
  const match = /^http:\/\/unix:(\/[^:]*):(.*)$/.exec(url);
  if (!match) return null;
  const [, socketPath, path] = match;
  return { socketPath, path: path.startsWith('/') ? path : `/${path}` };
}

/** The base of `url` that other paths of the same server hang off: its origin, or its socket's URL. */
export function serverBaseOf(url: string): string {
  const unix = unixSocketOf(url);
  return unix ? unixSocketUrl(unix.socketPath) : new URL(url).origin;
}

/**
 * One request with node's own HTTP client; resolves with the response as soon
 * as its head arrives (the body is read by the caller, e.g. as an event
 * stream). Lighter than fetch's web streams for the streams the system's own
 * clients keep open: machines following their files, sessions followed to `ready`.
 * `url` may name a server on a Unix socket (see unixSocketUrl).
 */
export function openHttp(url: string, options: HttpRequestOptions = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const common = { method: options.method ?? 'GET', headers: options.headers, signal: options.signal };
    const unix = unixSocketOf(url);
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = unix ? httpRequest({ ...common, ...unix }, resolve) : send(url, { ...common, lookup: lookupLocalhostNames }, resolve);
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The whole body of a response, as text. */
export async function readText(res: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of res) text += chunk;
  return text;
}

/** A whole exchange: the status and the body as text (openHttp, then readText). */
export async function requestText(url: string, options: HttpRequestOptions = {}): Promise<{ status: number; body: string }> {
  const res = await openHttp(url, options);
  return { status: res.statusCode ?? 0, body: await readText(res) };
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * DNS lookup in which `localhost` and every `*.localhost` name is loopback, as
 * RFC 6761 reserves them and browsers resolve them (a preview's origin is
 * `<routeId>.localhost` locally); the system resolver often knows only
 * `localhost` itself. Other names go to the system resolver.
 */
export function lookupLocalhostNames(hostname: string, options: LookupOptions, callback: LookupCallback): void {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  if (name !== 'localhost' && !name.endsWith('.localhost')) {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => (options.all || err ? callback(err, addresses) : callback(null, addresses[0].address, addresses[0].family)));
    return;
  }
  const loopback = options.family === 6 ? { address: '::1', family: 6 } : { address: '127.0.0.1', family: 4 };
  if (options.all) callback(null, [loopback]);
  else callback(null, loopback.address, loopback.family);
}
