import type { Socket } from 'node:net';

/**
 * Requests Node's HTTP parser refuses before any route sees them (headers or URL
 * over --max-http-header-size, bytes that are not HTTP, bad header characters, a
 * timeout) are answered in the api's error shape instead of Node's bare status
 * line: 431 naming `headers`, 408, or 400 naming `request`. Wired with
 * `server.on('clientError', answerClientError)`.
 */
export function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  const pending = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || pending?.headersSent) {
    socket.destroy();
    return;
  }
  const [status, reason, body] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', { message: 'headers: the request line and headers are larger than the server accepts (16 kB)', field: 'headers' }]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', { message: 'request: not received in time' }]
        : [400, 'Bad Request', { message: `request: not valid HTTP (${err.code ?? 'parse error'})`, field: 'request' }];
  const json = JSON.stringify({ statusCode: status, error: reason, ...body });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`,
  );
}
