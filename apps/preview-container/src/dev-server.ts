import { EventEmitter } from 'node:events';
import { realpathSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { basename, join, sep } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { MACHINE_VITE_CACHE_DIR, packageNameOf } from '@velocity/contracts';
import type { Connect, InlineConfig, Plugin, PluginOption, ViteDevServer } from 'vite';
import { defaultNodeModulesDir } from './config';
import {
  applyMachineSettings,
  importPackage,
  keepConfigBundleOutOf,
  serviceVitePackageDir,
  loadVite,
  machineSettingsPlugin,
  packageDirIn,
  projectConfigFile,
  type MachineSettings,
  type ViteRuntime,
} from './project-vite';
import { machineFsOptions, viteLockdown, type LockdownOptions } from './vite-lockdown';

/**
 * The Vite dev server for one session's files, in middleware mode: its
 * middlewares answer in the machine's own HTTP server (server.ts), and its HMR
 * socket takes the upgrades that server hands over. No port, no second hop.
 */
export interface DevServerOptions {
  workDir: string;
  templateType: string;
  /** Real path of the dependency folder linked as `<workDir>/node_modules`: the project's own, or the service's. */
  nodeModulesRealDir: string;
  hmrClientPort?: number;
  /** Packages to pre-bundle at start beside what Vite finds (a pooled machine has no sources to find them in). */
  optimizeDeps?: string[];
  /** The service's own node_modules (default: the one this program runs from), to tell a project's own dependencies from it. */
  serviceNodeModulesDir?: string;
  /**
   * Called with each Vite server as it is made, before it listens: at start, and again each time
   * Vite restarts itself (an edit of the project's vite.config). What is hooked onto a server
   * here survives a restart; what is hooked on after `startDevServer` would not (Vite copies the
   * new server's parts over the old object).
   */
  onServer?: (server: ViteDevServer, lockdown: LockdownOptions) => void;
}

export interface DevServer {
  vite: ViteDevServer;
  toolchain: Toolchain;
  /** Answers a request with Vite's middlewares (those of the current server, after a restart too); `next` when none did. */
  handle(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void;
  /** Hands a websocket upgrade to Vite's HMR socket (`vite-hmr` and `vite-ping` on `/`). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): Promise<void>;
}

/** Which Vite runs, with which config, on whose dependencies. */
export interface Toolchain {
  vite: ViteRuntime;
  /** The project's own vite.config, which Vite loads; without one, the template's plugins. */
  configFile?: string;
  /** The dependency folder is the project's own, not the service's: nothing of the service's is imported or served. */
  ownDependencies: boolean;
}

/**
 * Dependencies each template imports; pre-bundled at start so the first page load
 * neither waits for the optimiser nor gets a reload when it discovers them.
 * Only for machines without a config file of the project's: with one, Vite
 * discovers them, and the machine's warm-up walks the page before it is ready.
 */
export const OPTIMIZE: Record<string, string[]> = {
  react: ['react', 'react-dom/client', 'react/jsx-dev-runtime'],
  vue: ['vue'],
  // The Svelte plugin adds svelte's own entry points (svelte/internal/client...) itself.
  svelte: ['svelte'],
  'vanilla-ts': [],
};

/** Each template's Vite plugin; vanilla-ts needs none (Vite compiles TypeScript itself). */
const TEMPLATE_PLUGINS: Record<string, { name: string; load: () => Promise<unknown>; create: (module: any) => PluginOption }> = {
  react: { name: '@vitejs/plugin-react', load: () => import('@vitejs/plugin-react'), create: (module) => module.default() },
  vue: { name: '@vitejs/plugin-vue', load: () => import('@vitejs/plugin-vue'), create: (module) => module.default() },
  // No svelte.config.js from the project: like vite.config, a template machine's config is its own.
  svelte: { name: '@sveltejs/vite-plugin-svelte', load: () => import('@sveltejs/vite-plugin-svelte'), create: (module) => module.svelte({ configFile: false }) },
};

/**
 * The Vite plugins of a template, from the service's node_modules; or, given a
 * project's own dependency folder, from there (a project's Vite with the
 * service's plugin may not fit), and none when it has not got the plugin, as
 * the project's own `vite` would run without a config.
 */
export async function templatePlugins(templateType: string, projectNodeModulesDir?: string): Promise<PluginOption[]> {
  const plugin = TEMPLATE_PLUGINS[templateType];
  if (!plugin) return [];
  if (!projectNodeModulesDir) return [plugin.create(await plugin.load())];
  const dir = packageDirIn(projectNodeModulesDir, plugin.name);
  return dir ? [plugin.create(await importPackage(dir))] : [];
}

/**
 * Starts loading the service's Vite and the template's plugin (ES modules: some hundred
 * milliseconds to compile) while the machine waits for its files; the start then finds
 * them loaded. Only for the service's own dependencies: a project's may hold its own Vite.
 * A failure here is left to the start, which loads them again and says why.
 */
export function preloadServiceToolchain(templateType: string): void {
  void importPackage(serviceVitePackageDir()).catch(() => undefined);
  void TEMPLATE_PLUGINS[templateType]?.load().catch(() => undefined);
}

/** The Vite to run and whether the project's config file is loaded; see project-vite.ts. */
export async function projectToolchain(options: DevServerOptions): Promise<Toolchain> {
  const serviceDir = realpathSync(options.serviceNodeModulesDir ?? defaultNodeModulesDir());
  return {
    vite: await loadVite(options.workDir),
    configFile: projectConfigFile(options.workDir),
    ownDependencies: realpathSync(options.nodeModulesRealDir) !== serviceDir,
  };
}

/**
 * What the preview may read: the project and its dependency folder; and Vite's
 * own folder when it lies outside (a project with dependencies but no Vite of
 * its own runs the service's, whose client the page loads).
 */
export function lockdownOptions(options: DevServerOptions, toolchain: Toolchain): LockdownOptions {
  const dependencies = realpathSync(options.nodeModulesRealDir);
  const viteDir = toolchain.vite.packageDir;
  const viteOutside = !viteDir.startsWith(dependencies + sep);
  return { root: options.workDir, dependencyDirs: viteOutside ? [dependencies, viteDir] : [dependencies] };
}

export async function viteConfig(options: DevServerOptions, toolchain: Toolchain, upgrades: EventEmitter): Promise<InlineConfig> {
  const { workDir, hmrClientPort } = options;
  const { configFile, vite } = toolchain;
  // What the preview may read, and what it is told about the host (see vite-lockdown.ts).
  const lockdown = lockdownOptions(options, toolchain);
  const settings: MachineSettings = {
    root: workDir,
    // In the work folder: the dependency folder is read-only and shared (Vite's default is node_modules/.vite).
    cacheDir: join(workDir, MACHINE_VITE_CACHE_DIR),
    upgrades,
    hmrClientPort,
    fs: await machineFsOptions(lockdown),
    logLevel: 'warn',
  };
  if (configFile) keepConfigBundleOutOf([join(workDir, 'node_modules'), options.nodeModulesRealDir]);
  const template = configFile ? undefined : await templateConfig(options, toolchain);
  const config: InlineConfig = {
    // Vite loads the project's file and merges this over it; the settings plugin has the last word over its plugins.
    configFile: configFile ?? false,
    plugins: [viteLockdown(lockdown), ...(template?.plugins ?? []), machineSettingsPlugin(settings, vite.major), serverHooks(options, lockdown)],
    ...optimizeDepsOf(template?.optimizeDeps?.include ?? [], options.optimizeDeps ?? []),
  };
  applyMachineSettings(config, settings, vite.major);
  return config;
}

/** Vite merges these with the project's own `optimizeDeps.include`. */
function optimizeDepsOf(...lists: string[][]): Pick<InlineConfig, 'optimizeDeps'> {
  const include = [...new Set(lists.flat())];
  return include.length > 0 ? { optimizeDeps: { include } } : {};
}

/** Runs `onServer` on every server Vite makes, after the other plugins (the lockdown) set theirs up. */
function serverHooks(options: DevServerOptions, lockdown: LockdownOptions): Plugin {
  return { name: 'velocity:server-hooks', apply: 'serve', configureServer: (server) => options.onServer?.(server, lockdown) };
}

/** A machine without a config file of the project's: the template's plugins and pre-bundled dependencies. */
async function templateConfig(options: DevServerOptions, toolchain: Toolchain): Promise<Pick<InlineConfig, 'plugins' | 'optimizeDeps'>> {
  const projectNodeModulesDir = toolchain.ownDependencies ? options.nodeModulesRealDir : undefined;
  return {
    plugins: await templatePlugins(options.templateType, projectNodeModulesDir),
    optimizeDeps: { include: optimizeInclude(options.templateType, projectNodeModulesDir) },
  };
}

/** The template's dependencies to pre-bundle; from a project's own folder, only those it has. */
function optimizeInclude(templateType: string, projectNodeModulesDir?: string): string[] {
  const include = OPTIMIZE[templateType] ?? [];
  if (!projectNodeModulesDir) return include;
  return include.filter((specifier) => packageDirIn(projectNodeModulesDir, packageNameOf(specifier) ?? specifier));
}


export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  // As under `vite` in the project's folder: its config and tools resolve relative paths from there (Tailwind's `content`).
  process.chdir(options.workDir);
  const toolchain = await projectToolchain(options);
  // Vite's HMR socket listens for 'upgrade' here; the machine's server emits only the upgrades its routing lets through.
  const upgrades = new EventEmitter();
  const vite = await toolchain.vite.createServer(await viteConfig(options, toolchain, upgrades)).catch((error: unknown) => {
    throw toolchain.configFile ? projectConfigError(toolchain, error) : error;
  });
  // A project's plugins may put other files into the page (an icon sprite): its pages are transformed each time.
  if (!toolchain.configFile) memoizeIndexHtml(vite);
  return {
    vite,
    toolchain,
    // Read at each request: a restart (the project's vite.config edited) puts a new server's middlewares on `vite`.
    handle: (req, res, next) => {
      answerErrors(vite.middlewares);
      vite.middlewares(req, res, next);
    },
    upgrade: (req, socket, head) => upgrades.emit('upgrade', req, socket, head),
    close: () => vite.close(),
  };
}

/** Middleware stacks whose error middleware answers (see answerErrors). */
const answering = new WeakSet<Connect.Server>();

/**
 * In middleware mode Vite's last middleware logs an error (and sends it to the
 * page's HMR socket), then hands the request on without it; the machine's
 * server is Vite's, so it answers as Vite's own server does: its 500 page, with
 * the error overlay. The answer goes through the lockdown's path hiding.
 */
function answerErrors(middlewares: Connect.Server): void {
  if (answering.has(middlewares)) return;
  answering.add(middlewares);
  const last = middlewares.stack.at(-1);
  if (!last || (last.handle as { name?: string }).name !== 'viteErrorMiddleware') return;
  const logError = last.handle as unknown as Connect.ErrorHandleFunction;
  last.handle = ((err: Error, req: Connect.IncomingMessage, res: ServerResponse, next: Connect.NextFunction) =>
    logError(err, req, res, () => (res.headersSent ? next() : sendErrorPage(res, err)))) as unknown as Connect.NextHandleFunction;
}

/** Vite's own error page (its errorMiddleware outside middleware mode). */
function sendErrorPage(res: ServerResponse, err: Error & { id?: string; frame?: string; plugin?: string; pluginCode?: unknown; loc?: unknown }): void {
  const error = {
    message: stripVTControlCharacters(err.message ?? String(err)),
    stack: stripVTControlCharacters((err.stack ?? '').split('\n').filter((line) => /^\s*at/.test(line)).join('\n')),
    id: err.id,
    frame: stripVTControlCharacters(err.frame ?? ''),
    plugin: err.plugin,
    pluginCode: err.pluginCode?.toString(),
    loc: err.loc,
  };
  res.statusCode = 500;
  res.setHeader('content-type', 'text/html');
  res.end(`<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <title>Error</title>
    <script type="module">
      const error = ${JSON.stringify(error).replace(/</g, '\\u003c')}
      try {
        const { ErrorOverlay } = await import('/@vite/client')
        document.body.appendChild(new ErrorOverlay(error))
      } catch {
        const h = (tag, text) => Object.assign(document.createElement(tag), { textContent: text })
        document.body.append(h('h1', 'Internal Server Error'), h('h2', error.message), h('pre', error.stack), h('p', '(Error overlay failed to load)'))
      }
    </script>
  </head>
  <body></body>
</html>
`);
}

/** Vite could not start because of the project's own code (its config): the user's to fix, not the machine's. */
export class ProjectStartError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProjectStartError';
  }
}

/** A start that failed on the project's config (a syntax error, a plugin it lacks) says so, naming the file. */
function projectConfigError(toolchain: Toolchain, error: unknown): Error {
  const file = basename(toolchain.configFile ?? '');
  const reason = error instanceof Error ? error.message : String(error);
  return new ProjectStartError(`Vite ${toolchain.vite.version} could not start with the project's ${file}: ${reason}`, { cause: error });
}

/** Transformed pages kept per dev server: one page, a few URLs it is asked under. */
const INDEX_HTML_KEPT = 8;

/**
 * Makes `vite.transformIndexHtml` answer the same page asked again under the
 * same URL from memory. Vite parses the whole HTML on every page load (the
 * verification probe, every reload) though its output depends only on these
 * inputs and the template's plugins, which a machine never changes. A changed
 * page is a new key: Vite still reads index.html from disk for every request.
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
