import type { EventEmitter } from 'node:events';
import { promises as fsPromises, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { InlineConfig, Plugin, UserConfig, ViteDevServer } from 'vite';

/**
 * The project's own toolchain in a machine: which Vite runs (the project's,
 * from its node_modules, or the service's), whether the project's
 * vite.config is loaded, and what the machine sets over it.
 *
 * What differs between the Vite majors a project may bring (read from each
 * one's dist, 5.4, 6.4, 7.3 and 8.3):
 *  - entry: 5 and 6 ship ESM and CommonJS, 7 and 8 ESM only; the ESM entry is
 *    imported by file URL in every case.
 *  - HMR client port: `server.hmr.clientPort` in 5-7; Vite 8 reads
 *    `server.ws.clientPort` and copies `server.hmr.*` into `server.ws` where
 *    unset (with a deprecation warning).
 *  - config bundling: 6-8 write the bundled config into
 *    `<nearest node_modules>/.vite-temp/` and fall back to the config's own
 *    folder only on EACCES; 5 always writes beside the config.
 *  - plugin middlewares: in 5 and 6 plugins' `configureServer` runs before
 *    Vite's request checks are added, in 7 and 8 after them.
 *  - `server.environments` and `vite:invoke` exist from 6 on; 5 has
 *    `server.pluginContainer` and `server.ws` only.
 *  - `devtools` and `experimental.bundledDev` exist in 8 only (both off here).
 */

/** The config files Vite 5-8 look for at the root, in their order. */
export const VITE_CONFIG_FILES = ['vite.config.js', 'vite.config.mjs', 'vite.config.ts', 'vite.config.cjs', 'vite.config.mts', 'vite.config.cts'];

/** A Vite as the machine uses it. */
export interface ViteRuntime {
  createServer: (config: InlineConfig) => Promise<ViteDevServer>;
  version: string;
  major: number;
  /** Real path of its package folder. */
  packageDir: string;
}

/** The project's own config file at the root of the work folder, if any. */
export function projectConfigFile(workDir: string): string | undefined {
  return VITE_CONFIG_FILES.map((name) => join(workDir, name)).find(isFile);
}

/**
 * The Vite the machine runs: the one in `<workDir>/node_modules` (the project's
 * dependencies, or the service's for a template machine), else the service's own.
 * Only that folder is looked in, not its parents': a work folder inside the
 * service's checkout would otherwise find the service's Vite as the project's.
 */
export async function loadVite(workDir: string): Promise<ViteRuntime> {
  const packageDir = packageDirIn(join(workDir, 'node_modules'), 'vite') ?? serviceVitePackageDir();
  const vite = (await importPackage(packageDir)) as Pick<ViteRuntime, 'createServer' | 'version'>;
  if (typeof vite.createServer !== 'function' || typeof vite.version !== 'string') {
    throw new Error(`${packageDir} is not a Vite package (no createServer or version)`);
  }
  return { createServer: vite.createServer, version: vite.version, major: Number(vite.version.split('.')[0]), packageDir };
}

/** The real folder of package `name` directly in `nodeModulesDir`, when it is installed there. */
export function packageDirIn(nodeModulesDir: string, name: string): string | undefined {
  const dir = join(nodeModulesDir, name);
  return isFile(join(dir, 'package.json')) ? realpathSync(dir) : undefined;
}

/** The package folder of the Vite this program depends on. */
export function serviceVitePackageDir(): string {
  return realpathSync(dirname(require.resolve('vite/package.json')));
}

/** Imports a package's ESM entry from its folder, by file URL. */
export async function importPackage(packageDir: string): Promise<Record<string, unknown>> {
  return importModule(pathToFileURL(esmEntry(packageDir)).href);
}

/**
 * A real `import()`: this program is compiled to CommonJS, which turns
 * `import()` into `require()`. Vite 7 and 8 are ES modules only, and a file URL
 * is no `require` specifier.
 */
const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>;

/** Conditions an `import` from node matches, as node's resolver does. */
const IMPORT_CONDITIONS = new Set(['import', 'node', 'default', 'module-sync']);

/** The file `import '<package>'` loads: its `exports['.']` for an import from node, else `module`, `main`, index.js. */
export function esmEntry(packageDir: string): string {
  const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as {
    exports?: unknown;
    module?: string;
    main?: string;
  };
  const exported = manifest.exports === undefined ? undefined : exportTarget(rootExport(manifest.exports));
  if (manifest.exports !== undefined && !exported) throw new Error(`${packageDir}/package.json exports no "." entry for import`);
  return resolve(packageDir, exported ?? manifest.module ?? manifest.main ?? 'index.js');
}

/** `exports` may be the root's target itself, or a map of subpaths. */
function rootExport(exports: unknown): unknown {
  if (typeof exports !== 'object' || exports === null || Array.isArray(exports)) return exports;
  const keys = Object.keys(exports);
  return keys.some((key) => key.startsWith('.')) ? (exports as Record<string, unknown>)['.'] : exports;
}

function exportTarget(target: unknown): string | undefined {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) return target.map(exportTarget).find((found) => found !== undefined);
  if (typeof target !== 'object' || target === null) return undefined;
  for (const [condition, value] of Object.entries(target)) {
    if (!IMPORT_CONDITIONS.has(condition)) continue;
    const found = exportTarget(value);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** What the machine needs of Vite, whatever the project's config says. */
export interface MachineSettings {
  root: string;
  cacheDir: string;
  /** Where the machine's server emits the websocket upgrades for Vite's HMR socket. */
  upgrades: EventEmitter;
  hmrClientPort?: number;
  fs: { strict: boolean; allow: string[]; deny: string[] };
  logLevel: 'info' | 'warn' | 'error' | 'silent';
}

/**
 * Sets the machine's settings over a config: the project's file, merged with
 * the inline config, and changed by its plugins' `config` hooks. Assigned, not
 * merged: Vite's merge appends arrays (`server.fs.allow`) and keeps keys the
 * machine must drop (`server.hmr.port`).
 *
 * Dropped from the project's `server`: `proxy` (a preview forwards nothing: a
 * sandboxed machine has no network, an unsandboxed or cloud one would forward
 * anyone's requests to what it can reach), `open` (spawns a browser),
 * `https`, `port` and `origin` (Vite runs in middleware mode in the machine's
 * own server, which decides where it listens and how), and the HMR socket's
 * own host, port, path and protocol (it takes the upgrades the machine's
 * server hands it). Kept: `hmr: false` or `ws: false`, the
 * overlay, `headers`, `warmup`, `watch` (unless `null`: the machine's live
 * file changes reach the page through Vite's watcher).
 */
export function applyMachineSettings(config: UserConfig, settings: MachineSettings, major: number): void {
  // A root inside the work folder (an app in `client/`) is the project's choice; any other is not.
  const root = config.root ? resolve(settings.root, config.root) : settings.root;
  config.root = isInside(root, settings.root) ? root : settings.root;
  config.base = '/';
  config.cacheDir = settings.cacheDir;
  config.clearScreen = false;
  config.logLevel = settings.logLevel;
  const server = (config.server ??= {}) as NonNullable<UserConfig['server']> & Record<string, unknown>;
  for (const key of ['proxy', 'open', 'https', 'origin', 'port', 'strictPort', 'host']) delete server[key];
  Object.assign(server, {
    middlewareMode: true,
    // The machine's server and the edge decide which Host reaches Vite.
    allowedHosts: true,
    // Vite answers CORS for every *.localhost origin by default: one preview could then read another's sources.
    cors: false,
    fs: settings.fs,
  });
  if (server.watch === null) delete server.watch;
  setHmrSocket(server, settings, major);
  // Vite 8 only: devtools serve the module graph to any page, bundled dev adds endpoints the lockdown does not know.
  const own = config as Record<string, unknown>;
  if (major >= 8) {
    own.devtools = false;
    own.experimental = { ...(own.experimental as object | undefined), bundledDev: false };
  }
  // Other sites' pages may not open a preview's HMR socket (its token check).
  if (own.legacy) own.legacy = { ...(own.legacy as object), skipWebSocketTokenCheck: false };
}

/**
 * The page's HMR socket: on the machine's server (Vite 8 reads `server.ws`, 5-7
 * `server.hmr`), reached at the edge's port. Given no server in middleware
 * mode, Vite would listen on port 24678 for it: with the project's HMR off in
 * 5-7, the socket is off too (`ws: false`).
 */
function setHmrSocket(server: Record<string, unknown>, settings: Pick<MachineSettings, 'upgrades' | 'hmrClientPort'>, major: number): void {
  const hmr = server.hmr;
  const overlay = typeof hmr === 'object' && hmr !== null ? (hmr as { overlay?: boolean }).overlay : undefined;
  const kept = overlay === undefined ? {} : { overlay };
  const socket = { server: settings.upgrades, ...(settings.hmrClientPort ? { clientPort: settings.hmrClientPort } : {}) };
  if (major >= 8) {
    if (server.ws !== false) server.ws = socket;
    if (hmr !== false) server.hmr = kept;
    return;
  }
  server.hmr = hmr === false ? false : { ...kept, ...socket };
  if (hmr === false) server.ws = false;
}

/**
 * Applies the machine's settings after every other plugin's `config` hook
 * (last in the last group), so neither the project's file nor its plugins
 * change what routing and the sandbox need.
 */
export function machineSettingsPlugin(settings: MachineSettings, major: number): Plugin {
  return {
    name: 'velocity:machine-settings',
    enforce: 'post',
    config: {
      order: 'post',
      handler(config) {
        applyMachineSettings(config, settings, major);
      },
    },
  };
}

/**
 * Makes Vite 6-8 bundle a project's config beside the config file, in the
 * work folder, instead of in `node_modules/.vite-temp`: the dependency folder
 * is read-only (EROFS in the sandbox, which Vite does not fall back from) and
 * shared by every machine of the same dependencies. The creation of that
 * folder fails as unwritable (EACCES), which those versions answer by writing
 * beside the config. Idempotent.
 */
export function keepConfigBundleOutOf(nodeModulesDirs: string[]): void {
  for (const dir of nodeModulesDirs) refusedTempDirs.add(resolve(dir, '.vite-temp'));
  if (mkdirWrapped) return;
  mkdirWrapped = true;
  const mkdir = fsPromises.mkdir;
  fsPromises.mkdir = function (this: unknown, path: Parameters<typeof mkdir>[0], ...rest: unknown[]) {
    if (typeof path === 'string' && refusedTempDirs.has(resolve(path))) {
      return Promise.reject(Object.assign(new Error(`EACCES: the dependency folder is read-only, mkdir '${path}'`), { code: 'EACCES', path }));
    }
    return (mkdir as (...args: unknown[]) => Promise<unknown>).call(this, path, ...rest);
  } as typeof mkdir;
}

const refusedTempDirs = new Set<string>();
let mkdirWrapped = false;

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isInside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}
