import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON when the body is JSON, else the text (undefined when empty). */
  body: any;
  text: string;
}

/**
 * One HTTP request through node:http, not fetch: the path goes out exactly as
 * given (fetch's URL parser would resolve `%2e%2e`, normalise unicode and refuse
 * some headers), so the api sees what an attacker can send.
 */
export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string | string[]>; body?: string | Buffer; timeoutMs?: number } = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path, method, headers: options.headers ?? {}, timeout: options.timeoutMs ?? 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text || undefined;
        if (text && /json/.test(String(res.headers['content-type']))) {
          try {
            body = JSON.parse(text);
          } catch {
            body = text;
          }
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path.slice(0, 80)}: no answer in ${options.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** JSON request helper over rawRequest. */
export const sendJson = (baseUrl: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  rawRequest(baseUrl, method, path, {
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });

/**
 * Sends a websocket upgrade request (Vite's HMR protocol) on a raw socket and
 * resolves with the answer's head (status line and headers): what a proxy or a
 * machine answered before any frame, 101 or a refusal. Gives up after `timeoutMs`.
 */
export function upgradeHead(target: { port: number; address?: string }, host: string, options: { headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const extra = Object.entries(options.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  return new Promise((resolve, reject) => {
    const socket = connect(target.port, target.address ?? '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`Timed out after ${timeoutMs} ms waiting for the answer to a websocket upgrade for ${host}`));
    }, timeoutMs);
    let head = '';
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(head.slice(0, head.indexOf('\r\n\r\n')));
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(
      `GET /?token=x HTTP/1.1\r\nhost: ${host}\r\n${extra}upgrade: websocket\r\nconnection: Upgrade\r\n` +
        `sec-websocket-key: ${randomBytes(16).toString('base64')}\r\nsec-websocket-version: 13\r\nsec-websocket-protocol: vite-hmr\r\n\r\n`,
    );
  });
}
