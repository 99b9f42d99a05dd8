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
 * One request with node's own HTTP client; resolves with the response as soon
 * as its head arrives (the body is read by the caller, e.g. as an event
 * stream). Lighter than fetch's web streams for the streams the system's own
 * clients keep open: machines following their files, sessions followed to `ready`.
 */
export function openHttp(url: string, options: HttpRequestOptions = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const send = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = send(url, { method: options.method ?? 'GET', headers: options.headers, signal: options.signal, lookup: lookupLocalhostNames }, resolve);
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
