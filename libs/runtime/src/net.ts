import { createServer } from 'node:net';

/**
 * A port that is free on `host` right now (the kernel's pick). Another process
 * may take it before the caller binds it: callers that can, retry on EADDRINUSE.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** The longest path of a Unix socket on Linux (sun_path less its NUL); node binds a longer one cut short, silently. */
export const SOCKET_PATH_MAX_BYTES = 107;

/** Throws, naming `what`, when `path` is too long for a Unix socket. */
export function assertSocketPathFits(path: string, what: string): void {
  const bytes = Buffer.byteLength(path);
  if (bytes > SOCKET_PATH_MAX_BYTES) {
    throw new Error(`The path of ${what} is ${bytes} bytes, more than a Unix socket may have (${SOCKET_PATH_MAX_BYTES}): ${path} (choose a shorter folder)`);
  }
}
