/**
 * A preview page's modules, as a browser finds them: the module scripts and
 * stylesheets of its HTML, then the static imports of each module Vite serves
 * (Vite rewrites every import to a root path: `/src/App.jsx`, `/src/App.css`).
 * Shared by the machine's warm-up and the provisioner's verification walk.
 */

/** `src` of every `<script type="module" src="...">` in an HTML page. */
export function moduleScripts(html: string): string[] {
  const found: string[] = [];
  for (const [tag] of html.matchAll(/<script\b[^>]*>/gi)) {
    if (!/\btype\s*=\s*["']?module/i.test(tag)) continue;
    const src = /\bsrc\s*=\s*["']([^"']+)["']/i.exec(tag)?.[1];
    if (src) found.push(src);
  }
  return found;
}

/** `href` of every `<link rel="stylesheet" href="...">` in an HTML page. */
export function stylesheetLinks(html: string): string[] {
  const found: string[] = [];
  for (const [tag] of html.matchAll(/<link\b[^>]*>/gi)) {
    if (!/\brel\s*=\s*["']?stylesheet\b/i.test(tag)) continue;
    const href = /\bhref\s*=\s*["']([^"']+)["']/i.exec(tag)?.[1];
    if (href) found.push(href);
  }
  return found;
}

/** Specifiers of static `import ... from "x"` and `import "x"` statements in a transformed module. */
export function staticImports(code: string): string[] {
  return [...code.matchAll(/\bimport\s+(?:[^'"`;]*?\s+from\s+)?["']([^"']+)["']/g)].map((m) => m[1]);
}

/**
 * A module of the project itself, on the page's own origin: a root path that is
 * neither one of Vite's own (`/@vite/client`, `/@react-refresh`, `/@id/…`) nor a
 * dependency (`/node_modules/…`, or pre-bundled in Vite's cache folder:
 * `/node_modules/.vite/deps/…`, a machine's `/.vite-cache/deps/…`, always with
 * their `?v=<hash>`), which are not the project's code.
 */
export function isProjectModulePath(url: string): boolean {
  if (!url.startsWith('/') || url.startsWith('//') || url.startsWith('/@')) return false;
  return !url.includes('/node_modules/') && !/^\/\.vite[^/]*\//.test(url) && !/[?&]v=/.test(url);
}

/** The project's entry modules of a page: its module scripts and stylesheets. */
export function pageEntries(html: string): string[] {
  return [...new Set([...moduleScripts(html), ...stylesheetLinks(html)])].filter(isProjectModulePath);
}

export interface PageWalk {
  /** Modules asked for so far. */
  requested: number;
  /** Modules that did not answer 200, with the status or the error. */
  failed: { path: string; status?: number; error?: string }[];
  /** Modules asked for and not answered yet (what a timeout waited for). */
  inFlight: Set<string>;
}

/**
 * Asks for `entries` and every project module they import statically, `concurrency`
 * at a time, each as soon as its importer answered (no waiting for a whole level),
 * at most `maxModules`. `fetchModule` answers a path's status and body. Fills
 * `walk` as it goes, so a caller that times out can say what was still awaited.
 */
export async function walkPageModules(
  entries: string[],
  fetchModule: (path: string) => Promise<{ status: number; body: string }>,
  { concurrency = 6, maxModules = 200 }: { concurrency?: number; maxModules?: number } = {},
  walk: PageWalk = { requested: 0, failed: [], inFlight: new Set() },
): Promise<PageWalk> {
  const seen = new Set<string>();
  const queue: string[] = [];
  const add = (path: string) => {
    if (seen.has(path) || seen.size >= maxModules) return;
    seen.add(path);
    queue.push(path);
  };
  const visit = async (path: string) => {
    walk.requested++;
    walk.inFlight.add(path);
    try {
      const { status, body } = await fetchModule(path);
      if (status !== 200) walk.failed.push({ path, status });
      else for (const imported of staticImports(body)) if (isProjectModulePath(imported)) add(imported);
    } catch (error) {
      walk.failed.push({ path, error: (error as Error).message });
    } finally {
      walk.inFlight.delete(path);
    }
  };
  for (const entry of entries) if (isProjectModulePath(entry)) add(entry);
  await new Promise<void>((resolve) => {
    let active = 0;
    const pump = () => {
      while (active < concurrency && queue.length > 0) {
        active++;
        void visit(queue.shift()!).finally(() => {
          active--;
          pump();
        });
      }
      if (active === 0 && queue.length === 0) resolve();
    };
    pump();
  });
  return walk;
}
