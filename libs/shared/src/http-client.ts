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
    const req = send(url, { method: options.method ?? 'GET', headers: options.headers, signal: options.signal }, resolve);
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
