import { join } from 'node:path';
import { freePort } from '../../../libs/shared/src/net';
import type { KeepAlive } from '../../../libs/shared/src/http-server';
import type { InlineConfig, PluginOption, ViteDevServer } from 'vite';
import { machineFsOptions, viteLockdown } from './vite-lockdown';

/**
 * The Vite dev server for one session's files, on a loopback port of its own.
 * Only the container's proxy talks to it.
 */
export interface DevServerOptions {
  workDir: string;
  templateType: string;
  /** Real path of the shared node_modules, so Vite may serve files from it. */
  nodeModulesRealDir: string;
  hmrClientPort?: number;
}

export interface DevServer {
  port: number;
  /** Internal URL of the dev server, for the proxy target and health probes. */
  origin: string;
  vite: ViteDevServer;
  close(): Promise<void>;
}

/**
 * Dependencies each template imports; pre-bundled at start so the first page load
 * neither waits for the optimiser nor gets a reload when it discovers them.
 */
export const OPTIMIZE: Record<string, string[]> = {
  react: ['react', 'react-dom/client', 'react/jsx-dev-runtime'],
  vue: ['vue'],
  // The Svelte plugin adds svelte's own entry points (svelte/internal/client...) itself.
  svelte: ['svelte'],
  'vanilla-ts': [],
};

/** The Vite plugins of each template; vanilla-ts needs none (Vite compiles TypeScript itself). */
export async function templatePlugins(templateType: string): Promise<PluginOption[]> {
  switch (templateType) {
    case 'react': {
      const { default: react } = await import('@vitejs/plugin-react');
      return [react()];
    }
    case 'vue': {
      const { default: vue } = await import('@vitejs/plugin-vue');
      return [vue()];
    }
    case 'svelte': {
      const { svelte } = await import('@sveltejs/vite-plugin-svelte');
      // No svelte.config.js from the project: like vite.config, the container's config is its own.
      return [svelte({ configFile: false })];
    }
    default:
      return [];
  }
}

export async function viteConfig(options: DevServerOptions, port: number): Promise<InlineConfig> {
  const { workDir, templateType, nodeModulesRealDir, hmrClientPort } = options;
  // What the preview may read, and what it is told about the host (see vite-lockdown.ts).
  const lockdown = { root: workDir, dependencyDirs: [nodeModulesRealDir] };
  return {
    root: workDir,
    // Each preview has an origin of its own: the app is served at its root.
    base: '/',
    configFile: false,
    cacheDir: join(workDir, '.vite-cache'),
    logLevel: 'warn',
    clearScreen: false,
    plugins: [viteLockdown(lockdown), ...(await templatePlugins(templateType))],
    optimizeDeps: { include: OPTIMIZE[templateType] ?? [] },
    server: {
      host: '127.0.0.1',
      port,
      strictPort: true,
      allowedHosts: true,
      // Vite answers CORS for every *.localhost origin by default: one preview could then read another's
      // sources. A preview's own requests are same-origin and need none.
      cors: false,
      // `server.hmr.clientPort` is deprecated in Vite 8 in favour of `server.ws.clientPort`.
      ...(hmrClientPort ? { ws: { clientPort: hmrClientPort } } : {}),
      fs: await machineFsOptions(lockdown),
    },
  };
}

export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  const { createServer } = await import('vite');
  let lastError: unknown;
  // A free port found now may be taken before Vite binds it: try again a couple of times.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const vite = await createServer(await viteConfig(options, port));
    memoizeIndexHtml(vite);
    try {
      await vite.listen();
    } catch (error) {
      lastError = error;
      await vite.close().catch(() => undefined);
      if ((error as NodeJS.ErrnoException)?.code === 'EADDRINUSE' || /in use/i.test(String((error as Error)?.message))) continue;
      throw error;
    }
    // Only the container's proxy connects, over loopback: its connection is kept while a pooled machine
    // waits for a claim (Node's default of 5 s would close it), so the session's first request does not open one.
    if (vite.httpServer && 'keepAliveTimeout' in vite.httpServer) vite.httpServer.keepAliveTimeout = VITE_KEEP_ALIVE.serverMs;
    const address = vite.httpServer?.address();
    const realPort = typeof address === 'object' && address ? address.port : port;
    return {
      port: realPort,
      origin: `http://127.0.0.1:${realPort}`,
      vite,
      close: () => vite.close(),
    };
  }
  throw lastError;
}

/** The container's proxy's idle connections to Vite (see KeepAlive: the proxy drops them first). */
export const VITE_KEEP_ALIVE: KeepAlive = { serverMs: 10 * 60_000, clientIdleMs: 9 * 60_000 };

/** Transformed pages kept per dev server: one page, a few URLs it is asked under. */
const INDEX_HTML_KEPT = 8;

/**
 * Makes `vite.transformIndexHtml` answer the same page asked again under the
 * same URL from memory. Vite parses the whole HTML on every page load (the
 * verification probe, every reload) though its output depends only on these
 * inputs and the plugins, which a machine never changes. A changed page is a
 * new key: Vite still reads index.html from disk for every request.
 */
export function memoizeIndexHtml(vite: Pick<ViteDevServer, 'transformIndexHtml'>): void {
  const transform = vite.transformIndexHtml.bind(vite);
  const kept = new Map<string, Promise<string>>();
  vite.transformIndexHtml = (url, html, originalUrl) => {
    const key = `${url}\0${originalUrl ?? ''}\0${html}`;
    const hit = kept.get(key);
    if (hit) return hit;
    const result = transform(url, html, originalUrl);
    kept.set(key, result);
    if (kept.size > INDEX_HTML_KEPT) kept.delete(kept.keys().next().value!);
    // A failed transform (a page with an error in it) is tried again next time.
    result.catch(() => kept.get(key) === result && kept.delete(key));
    return result;
  };
}

export { freePort };
