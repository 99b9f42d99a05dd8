import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withTimeout, moduleScripts, staticImports } from '@velocity/contracts';
import { openHttp, readText } from '@velocity/runtime';
import type { DevServer } from './dev-server';

export { moduleScripts, staticImports };

/**
 * Loads the page once the way a browser starts to: index.html, its module scripts
 * and their static imports, a few levels deep. This makes Vite transform the entry and finish
 * pre-bundling dependencies before the container reports healthy, so the user's
 * first load neither waits for the optimiser nor gets a reload when it finishes.
 */
export interface WarmUpResult {
  requests: number;
  failed: string[];
}

export async function warmUp(
  origin: string,
  timeoutMs = 60_000,
  {
    maxDepth = 4,
    maxRequests = 100,
    onModule,
  }: {
    maxDepth?: number;
    maxRequests?: number;
    /** Each module's answer (not the page's): a 404 is a module the page cannot load (BuildTracker.moduleRequestFinished). */
    onModule?: (path: string, status: number) => void;
  } = {},
): Promise<WarmUpResult> {
  const result: WarmUpResult = { requests: 0, failed: [] };
  const get = async (path: string): Promise<string | null> => {
    result.requests++;
    try {
      const res = await openHttp(origin + path, { headers: { accept: path === '/' ? 'text/html' : '*/*' } });
      const body = await readText(res);
      const status = res.statusCode ?? 0;
      if (path !== '/') onModule?.(path, status);
      if (status !== 200) result.failed.push(`${path} ${status}`);
      return status === 200 ? body : null;
    } catch (error) {
      result.failed.push(`${path} ${(error as Error).message}`);
      return null;
    }
  };
  await withTimeout(
    (async () => {
      const html = await get('/');
      if (html === null) return;
      // Breadth first through the module graph: Vue and Svelte components import the
      // framework's runtime one level below the entry, React's entry does it directly.
      const seen = new Set<string>();
      let level = moduleScripts(html).filter((src) => src.startsWith('/') && !src.startsWith('//') && !src.includes('/@'));
      for (let depth = 0; depth < maxDepth && level.length > 0; depth++) {
        const fresh = level.filter((url) => !seen.has(url) && seen.size < maxRequests && (seen.add(url), true));
        const modules = await Promise.all(fresh.map(get));
        level = [...new Set(modules.flatMap((code) => (code ? staticImports(code) : [])))].filter(
          (url) => url.startsWith('/') && !url.startsWith('//') && !url.startsWith('/@vite/'),
        );
      }
    })(),
    timeoutMs,
    'the dev server to serve the first page load',
  );
  return result;
}

/**
 * Runs `warm` against the dev server on a loopback port of its own, closed
 * after: the first page load happens before the preview is open to anyone (the
 * machine's server answers 503 until then), and only this process knows the port.
 */
export async function warmUpOnLoopback<T>(devServer: Pick<DevServer, 'handle' | 'upgrade'>, warm: (origin: string) => Promise<T>): Promise<T> {
  const served = await serveOnLoopback(devServer);
  try {
    return await warm(served.origin);
  } finally {
    await served.close();
  }
}

/** The dev server alone (HTTP and its HMR socket, no routing) on a free loopback port. */
export async function serveOnLoopback(devServer: Pick<DevServer, 'handle' | 'upgrade'>): Promise<{ port: number; origin: string; close(): Promise<void> }> {
  const server = createServer((req, res) =>
    devServer.handle(req, res, () => {
      if (!res.headersSent) res.writeHead(404).end();
    }),
  );
  server.on('upgrade', (req, socket, head) => devServer.upgrade(req, socket, head));
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

/**
 * On a pooled machine, once it serves: its page again through the machine's own
 * port, some dozens of times. A claimed session's first requests take this path
 * (the machine's server, Vite's HTML transform); run once only, it would still be cold
 * (interpreted) code when a session waits on it. Here V8 compiles and optimises
 * it while the machine waits for a claim, at the pool's low priority.
 */
export async function rehearsePage(pageUrl: string, host: string, times = 40, timeoutMs = 30_000): Promise<void> {
  await withTimeout(
    (async () => {
      for (let i = 0; i < times; i++) {
        // Node's own client, which the session's live files use next: its code is compiled here too.
        const res = await openHttp(pageUrl, { headers: { accept: 'text/html', host } });
        await readText(res);
        if (res.statusCode !== 200) throw new Error(`GET ${pageUrl} answered ${res.statusCode}`);
      }
    })(),
    timeoutMs,
    'the page rehearsal of a pooled machine',
  );
}

/** A Host header that names this machine's own preview origin (the machine knows no more of it than the first label). */
export const previewHostOf = (routeId: string) => `${routeId}.localhost`;

/**
 * Asks Vite for each package as a page would import it (`/@id/<specifier>`),
 * which waits until the optimiser has pre-bundled it: a pooled machine does
 * this before it joins the pool, so a claim finds the bundles made.
 */
export async function warmDependencies(origin: string, specifiers: readonly string[], timeoutMs = 60_000): Promise<WarmUpResult> {
  const result: WarmUpResult = { requests: 0, failed: [] };
  await withTimeout(
    Promise.all(
      specifiers.map(async (specifier) => {
        result.requests++;
        const res = await openHttp(`${origin}/@id/${specifier}`).catch((error: Error) => error);
        if (res instanceof Error) return void result.failed.push(`${specifier} ${res.message}`);
        await readText(res);
        if (res.statusCode !== 200) result.failed.push(`${specifier} ${res.statusCode}`);
      }),
    ),
    timeoutMs,
    'the pre-bundling of the packages a pooled machine was started for',
  ).catch((error: Error) => result.failed.push(error.message));
  return result;
}
