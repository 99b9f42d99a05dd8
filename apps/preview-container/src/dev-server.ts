import { realpathSync } from 'node:fs';
import { basename, join, sep } from 'node:path';
import { freePort, retry, type KeepAlive } from '@velocity/runtime';
import { packageNameOf } from '@velocity/contracts';
import type { InlineConfig, Plugin, PluginOption, ViteDevServer } from 'vite';
import { defaultNodeModulesDir } from './config';
import {
  applyMachineSettings,
  importPackage,
  keepConfigBundleOutOf,
  loadVite,
  machineSettingsPlugin,
  packageDirIn,
  projectConfigFile,
  type MachineSettings,
  type ViteRuntime,
} from './project-vite';
import { machineFsOptions, viteLockdown, type LockdownOptions } from './vite-lockdown';

/**
 * The Vite dev server for one session's files, on a loopback port of its own.
 * Only the container's proxy talks to it.
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
  port: number;
  /** Internal URL of the dev server, for the proxy target and health probes. */
  origin: string;
  vite: ViteDevServer;
  toolchain: Toolchain;
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

export async function viteConfig(options: DevServerOptions, port: number, toolchain: Toolchain): Promise<InlineConfig> {
  const { workDir, hmrClientPort } = options;
  const { configFile, vite } = toolchain;
  // What the preview may read, and what it is told about the host (see vite-lockdown.ts).
  const lockdown = lockdownOptions(options, toolchain);
  const settings: MachineSettings = {
    root: workDir,
    // In the work folder: the dependency folder is read-only and shared (Vite's default is node_modules/.vite).
    cacheDir: join(workDir, '.vite-cache'),
    port,
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
  // A free port found now may be taken before Vite binds it: try again a couple of times, at once.
  return retry(() => listenOnFreePort(options, toolchain), { attempts: 3, initialDelayMs: 0, shouldRetry: isAddressInUse });
}

async function listenOnFreePort(options: DevServerOptions, toolchain: Toolchain): Promise<DevServer> {
  const port = await freePort();
  const vite = await toolchain.vite.createServer(await viteConfig(options, port, toolchain)).catch((error: unknown) => {
    throw toolchain.configFile ? projectConfigError(toolchain, error) : error;
  });
  // A project's plugins may put other files into the page (an icon sprite): its pages are transformed each time.
  if (!toolchain.configFile) memoizeIndexHtml(vite);
  try {
    await vite.listen();
  } catch (error) {
    await vite.close().catch(() => undefined);
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
    toolchain,
    close: () => vite.close(),
  };
}

function isAddressInUse(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'EADDRINUSE' || /in use/i.test(String((error as Error)?.message));
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

/** The container's proxy's idle connections to Vite (see KeepAlive: the proxy drops them first). */
export const VITE_KEEP_ALIVE: KeepAlive = { serverMs: 10 * 60_000, clientIdleMs: 9 * 60_000 };

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

export { freePort };
