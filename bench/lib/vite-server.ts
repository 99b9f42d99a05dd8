import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import react from '@vitejs/plugin-react';
import { createServer } from 'vite';

/**
 * `node -r @swc-node/register bench/lib/vite-server.ts <root> <port>`: a React
 * project's Vite dev server as a developer runs it, on 127.0.0.1:<port>: the
 * React template's plugin and pre-bundled dependencies (the machine's list for
 * the template), `<root>/node_modules` being the service's. Closes on SIGTERM.
 */
async function main(): Promise<void> {
  const [root, port] = process.argv.slice(2);
  if (!root || !port) throw new Error('usage: vite-server.ts <root> <port>');
  const server = await createServer({
    configFile: false,
    root,
    // Not node_modules/.vite: that is the service's shared folder.
    cacheDir: join(root, '.vite-cache'),
    plugins: [react()],
    optimizeDeps: { include: ['react', 'react-dom/client', 'react/jsx-dev-runtime'] },
    server: { host: '127.0.0.1', port: Number(port), strictPort: true, fs: { allow: [root, realpathSync(join(root, 'node_modules'))] } },
    logLevel: 'warn',
    clearScreen: false,
  });
  await server.listen();
  process.once('SIGTERM', () => void server.close().finally(() => process.exit(0)));
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : String(err));
  process.exit(1);
});
