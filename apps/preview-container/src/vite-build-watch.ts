import { readFileSync, realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import type { ViteDevServer } from 'vite';
import type { Logger } from '@velocity/runtime';
import { isProjectModulePath, pageEntries } from '@velocity/contracts';
import { BuildTracker, originalPosition, stripQuery, type SourceMapLike, type ViteErrorLike } from './build-state';
import { injectRuntimeErrorsClient } from './runtime-errors-client';
import { lockdownRewrites, pathHider } from './vite-lockdown';

/**
 * Feeds a BuildTracker from the machine's own Vite dev server, with what is the
 * same in Vite 5 to 8 only: the hot channels' `send` (Vite sends every error to
 * pages as `{ type: 'error', err }`, and `update` / `full-reload` after a file
 * changed), the module graph (`getModuleByUrl`, `getModulesByFile`,
 * `urlToModuleMap`), `transformRequest`, the file watcher, and
 * `transformIndexHtml`, through which the page gets the runtime-errors client.
 *
 * Vite compiles a module only when something asks for it, so after a change the
 * page may have nobody to ask (an AI builder writes files and reads events).
 * Each change is therefore checked here: the modules Vite names in its update,
 * and every module that had an error, are transformed again (and the project
 * modules they import that were never transformed). A module that transforms
 * without error clears its errors; one that fails records the new ones.
 */
export interface ViteBuildWatch {
  /** Resolves once the checks scheduled so far have run (for tests). */
  settled(): Promise<void>;
  close(): void;
}

/** The parts of a module graph node read here (Vite 5's ModuleNode, Vite 6+'s EnvironmentModuleNode). */
interface ModuleLike {
  url: string;
  file: string | null;
  importedModules: Set<ModuleLike>;
  importers: Set<ModuleLike>;
  transformResult: { map?: SourceMapLike | null } | null;
}

interface ModuleGraphLike {
  urlToModuleMap: Map<string, ModuleLike>;
  getModuleByUrl(url: string): Promise<ModuleLike | undefined> | ModuleLike | undefined;
  getModulesByFile(file: string): Set<ModuleLike> | undefined;
}

interface HotChannelLike {
  send: (...args: unknown[]) => unknown;
}

/** How long after a change its checks run: the changes of one save come together. */
const RECHECK_DELAY_MS = 30;
/** Modules transformed in one round at most (a change that breaks much is reported by its first errors). */
const RECHECK_MAX_MODULES = 100;
/** Errors Vite throws that say nothing about the project's code. */
const NOT_THE_CODE = new Set(['ERR_OUTDATED_OPTIMIZED_DEP', 'ERR_CLOSED_SERVER', 'ERR_OPTIMIZE_DEPS_PROCESSING_ERROR']);

export function watchViteBuild(
  vite: ViteDevServer,
  tracker: BuildTracker,
  options: { root: string; dependencyDirs: string[]; logger?: Logger; recheckDelayMs?: number },
): ViteBuildWatch {
  const root = realOrSame(resolve(options.root));
  tracker.hidePaths = projectPathHider(options.root, options.dependencyDirs);
  const client = (vite as { environments?: { client?: { moduleGraph: unknown; transformRequest(url: string): Promise<unknown> } } }).environments?.client;
  const graph = (client?.moduleGraph ?? vite.moduleGraph) as unknown as ModuleGraphLike;
  const transform = (url: string) => (client ? client.transformRequest(url) : vite.transformRequest(url));
  tracker.locate = locator(graph, tracker);

  let closed = false;
  let pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let rounds: Promise<void> = Promise.resolve();

  const schedule = (urls: Iterable<string | undefined>) => {
    if (closed) return;
    for (const url of urls) if (url) pending.add(url);
    timer ??= setTimeout(() => {
      timer = undefined;
      const urls = pending;
      pending = new Set();
      rounds = rounds.then(() => round(urls)).catch((err) => options.logger?.warn('build check failed', { err }));
    }, options.recheckDelayMs ?? RECHECK_DELAY_MS);
  };

  async function round(changed: Set<string>): Promise<void> {
    const visited = new Set<string>();
    for (const url of new Set([...changed, ...tracker.recheckUrls()])) await check(url, visited);
  }

  /** Transforms `url` as a page would ask for it; records the outcome; follows its never-transformed project imports. */
  async function check(url: string, visited: Set<string>): Promise<void> {
    const path = withoutTimestamp(url);
    if (closed || visited.has(path) || visited.size >= RECHECK_MAX_MODULES || !isProjectModulePath(stripQuery(path))) return;
    visited.add(path);
    try {
      await transform(path);
    } catch (error) {
      const code = (error as { code?: string })?.code;
      if (code && NOT_THE_CODE.has(code)) return;
      const module = await moduleOf(path);
      const file = module?.file ?? fileOfUrl(path);
      if (code === 'ERR_LOAD_URL') return missing(path, module, file ?? undefined);
      tracker.buildError(error as ViteErrorLike, stripQuery(path), file ?? undefined);
      return;
    }
    const module = await moduleOf(path);
    tracker.moduleOk(module?.file ?? fileOfUrl(path), stripQuery(path));
    for (const imported of module?.importedModules ?? []) {
      if (imported.transformResult || !imported.file || !isInside(imported.file, root)) continue;
      await check(imported.url, visited);
    }
  }

  /** The file is gone: its own errors went with it; if a module or the page still imports it, that import is the error now. */
  const missing = (path: string, module: ModuleLike | undefined, file: string | undefined) => {
    if (file) tracker.fileGone(file);
    const importer = [...(module?.importers ?? [])].find((m) => m.file)?.file ?? undefined;
    if (importer || pageImports(stripQuery(path))) tracker.missingModule(path, importer);
    else tracker.requestGone(path);
  };
  const pageImports = (path: string) => {
    try {
      return pageEntries(readFileSync(resolve(root, 'index.html'), 'utf8')).some((entry) => stripQuery(entry) === path);
    } catch {
      return false;
    }
  };
  const moduleOf = async (url: string) => (await graph.getModuleByUrl(url)) ?? undefined;
  const fileOfUrl = (url: string) => {
    const path = stripQuery(url);
    try {
      return resolve(root, `.${decodeURIComponent(path)}`);
    } catch {
      return undefined;
    }
  };
  /** The URL to check again for an error about `file`: its module's, else the file's own root path. */
  const urlOfFile = (file: string | undefined) => {
    if (!file) return undefined;
    const clean = stripQuery(file);
    const module = graph.getModulesByFile(clean)?.values().next().value;
    if (module?.url) return stripQuery(module.url);
    return isInside(clean, root) ? `/${relative(root, clean).split(sep).join('/')}` : undefined;
  };

  const observe = (payload: unknown) => {
    if (closed || typeof payload !== 'object' || payload === null) return;
    const { type } = payload as { type?: unknown };
    if (type === 'error') {
      const err = (payload as { err?: ViteErrorLike }).err ?? {};
      tracker.buildError(err, urlOfFile(err.loc?.file || err.id));
    } else if (type === 'update') {
      const updates = (payload as { updates?: { path?: string; acceptedPath?: string }[] }).updates ?? [];
      tracker.codeChanged();
      schedule(updates.flatMap((update) => [update.path, update.acceptedPath]));
    } else if (type === 'full-reload') {
      const { triggeredBy } = payload as { triggeredBy?: string };
      tracker.codeChanged();
      schedule([typeof triggeredBy === 'string' && isAbsolute(triggeredBy) ? urlOfFile(triggeredBy) : undefined]);
    }
  };

  // Wrapped after the lockdown (vite-lockdown.ts) wrapped them: the payloads are seen with their real paths,
  // which the tracker hides the same way.
  const unwrap: (() => void)[] = [];
  for (const channel of hotChannels(vite)) {
    const send = channel.send;
    channel.send = function (this: unknown, ...args: unknown[]) {
      try {
        observe(args[0]);
      } catch (err) {
        options.logger?.warn('build state: payload not understood', { err });
      }
      return send.apply(this, args);
    };
    unwrap.push(() => (channel.send = send));
  }

  // A file added or removed may fix or break a module that had an error (an import of it).
  const onAdd = () => schedule([]);
  const onUnlink = (file: string) => {
    tracker.fileGone(file);
    schedule([]);
  };
  vite.watcher.on('add', onAdd);
  vite.watcher.on('unlink', onUnlink);
  vite.watcher.on('change', onAdd);

  const transformIndexHtml = vite.transformIndexHtml;
  vite.transformIndexHtml = async (...args: Parameters<ViteDevServer['transformIndexHtml']>) =>
    injectRuntimeErrorsClient(await transformIndexHtml.apply(vite, args));

  return {
    async settled() {
      while (timer || pending.size > 0) await new Promise((r) => setTimeout(r, 5));
      await rounds;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      for (const undo of unwrap) undo();
      vite.watcher.off('add', onAdd);
      vite.watcher.off('unlink', onUnlink);
      vite.watcher.off('change', onAdd);
      vite.transformIndexHtml = transformIndexHtml;
    },
  };
}

/** How the lockdown names paths in error reports (vite-lockdown.ts): the project's relative, its dependencies' as `node_modules/…`. */
export function projectPathHider(root: string, dependencyDirs: string[]): (text: string) => string {
  const rootDirs = unique([resolve(root), realOrSame(resolve(root))]);
  const deps = unique(dependencyDirs.flatMap((dir) => [resolve(dir), realOrSame(resolve(dir))]));
  return pathHider(lockdownRewrites(rootDirs, deps));
}

/** Where a served module's position is in the project: its file, and the line its source map gives. */
function locator(graph: ModuleGraphLike, tracker: BuildTracker) {
  return (urlPath: string, line?: number, column?: number) => {
    const path = withoutTimestamp(urlPath);
    const module = graph.urlToModuleMap.get(path) ?? graph.urlToModuleMap.get(stripQuery(path));
    const file = module?.file ? tracker.projectPath(module.file) : undefined;
    if (!module || !file) return undefined;
    const map = module.transformResult?.map;
    if (line === undefined || column === undefined) return { file };
    // Without a map the served code is the file as it is; with one, a position it does not cover is not claimed.
    const original = map ? originalPosition(map, line, column) : { line, column };
    return { file, ...original };
  };
}

function hotChannels(vite: ViteDevServer): HotChannelLike[] {
  const candidates = [
    vite.ws,
    (vite as { hot?: unknown }).hot,
    (vite as { environments?: { client?: { hot?: unknown } } }).environments?.client?.hot,
  ] as unknown[];
  return unique(candidates.filter((c): c is HotChannelLike => typeof (c as HotChannelLike | undefined)?.send === 'function'));
}

/** `/src/App.jsx?t=123` → `/src/App.jsx`: Vite keeps one module per URL without the HMR timestamp. */
function withoutTimestamp(url: string): string {
  return url.replace(/([?&])t=\d+&?/, '$1').replace(/[?&]$/, '');
}

function isInside(file: string, dir: string): boolean {
  return file === dir || file.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function realOrSame(path: string): string {
  try {
    return realpathSync.native(path);
  } catch {
    return path;
  }
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}
