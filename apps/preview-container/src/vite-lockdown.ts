import { lstatSync, realpathSync, type Stats } from 'node:fs';
import { realpath } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import type { Connect, FileSystemServeOptions, Plugin, ResolvedConfig, ViteDevServer } from 'vite';
import { sendJson } from '@velocity/runtime';

/**
 * Locks Vite's dev server down inside a preview machine. The project's code is
 * untrusted and anyone with the preview URL can ask Vite anything, so:
 *  - no dev endpoint acts on the host (opening an editor spawns a process per request);
 *  - no file is served whose real path is outside the project and its real
 *    dependencies (the service's node_modules holds workspace symlinks to the
 *    service's own sources, and Vite checks `server.fs` against unresolved paths);
 *    a project with a dependency folder of its own is not given the service's;
 *  - what Vite tells the browser about errors names no host folder.
 *
 * It runs in the project's own Vite, 5 to 8. Their dev endpoints, read from
 * each one's dist (server/index.ts, ws.ts), are the same but where noted:
 *  - `/__open-in-editor?file=` (launch-editor-middleware) spawns $LAUNCH_EDITOR,
 *    $VISUAL, $EDITOR or a guessed editor on any existing host file: BLOCKED.
 *    The error overlay and the Svelte inspector link to it; in a preview there is no editor to open.
 *  - the HMR ping (`Accept: text/x-vite-ping`, answered 204, and the `vite-ping`
 *    websocket) touches nothing; the client needs it to reconnect: kept.
 *  - the proxy exists only with `server.proxy`; in Vite 8, `/@vite/lazy?` and
 *    in-memory files only with `experimental.bundledDev`, devtools only with
 *    `devtools` and @vitejs/devtools installed: the machine turns each off over
 *    the project's config (project-vite.ts), so none is registered.
 *  - websocket events from the page: `vite:invoke` (6-8) may only call `getBuiltins`
 *    (the client environment disables `fetchModule`), `vite:invalidate` (5-8) re-runs HMR
 *    for one of the project's modules, `vite:forward-console` (8) writes the page's
 *    console errors to the server log when enabled: none acts on the host, kept.
 *    Their answers (a refused invoke carries a stack) are cleaned like errors.
 *  - files: `/@fs/<absolute path>`, root-relative paths (the `node_modules`
 *    symlink included, any query: `?raw`, `?url`, `?import`, `?inline`...), public
 *    files, and `/@id/<specifier>`: checked by real path before Vite sees the
 *    request; modules are checked again when loaded, and CSS `@import`s when resolved.
 */
export interface LockdownOptions {
  /** The project's work folder: Vite's root. */
  root: string;
  /** Folders of the dependencies the project imports (its node_modules, or the service's for a template), as given or real. */
  dependencyDirs: string[];
}

/** The folders whose files may be served, and how error reports name paths. */
interface LockdownPaths {
  realRoot: string;
  /** Real paths of the root and the dependency folders. */
  allowedDirs: string[];
  hidePaths: (text: string) => string;
}

/** A host path prefix and what an error report says instead. */
export interface PathRewrite {
  from: string;
  to: string;
}

/** What a refused request gets: the same answer as a file that does not exist. */
const NOT_FOUND = { error: 'Not found' };

/** Dev endpoints that act on the host (see the list above); matched case-insensitively, as connect does. */
const HOST_ENDPOINTS = ['/__open-in-editor'];

/** Vite 8's default `server.fs.deny`: setting `deny` replaces it, so it is repeated here. */
export const VITE_DEFAULT_FS_DENY = ['.env', '.env.*', '*.{crt,pem,key,p12,pfx,cer,der}', '.npmrc', '.yarnrc.yml', '**/.git/**'];

/** Names of credentials no preview imports, refused wherever they are inside the allowed folders. */
export const SECRET_FILE_DENY = [
  '.netrc',
  '.pgpass',
  '.git-credentials',
  '.yarnrc',
  'id_{rsa,dsa,ecdsa,ed25519}*',
  '*.{jks,keystore,kdbx}',
  '**/.ssh/**',
  '**/.aws/**',
  '**/.docker/**',
];

/**
 * The Vite plugin. Its middlewares are added in the `configureServer` body, so
 * they run before all of Vite's own (in Vite 7 and 8 after its request
 * validation, CORS and host checks, in 5 and 6 before them); it is the first
 * plugin (see moveBeforeOtherPrePlugins), so they run before other plugins'
 * too, and its load check before their loads.
 */
export function viteLockdown(options: LockdownOptions): Plugin {
  let paths: Promise<LockdownPaths> | undefined;
  const lockdownPaths = () => (paths ??= resolveLockdownPaths(options));
  const plugin: Plugin = {
    name: 'velocity:lockdown',
    enforce: 'pre',
    apply: 'serve',
    configResolved(config) {
      moveBeforeOtherPrePlugins(config.plugins as Plugin[], plugin);
      refuseResolvingOutside(config, async () => (await lockdownPaths()).allowedDirs);
    },
    configureServer: {
      order: 'pre',
      async handler(server) {
        const { allowedDirs, hidePaths, realRoot } = await lockdownPaths();
        server.middlewares.use(hidePathsInErrorResponses(hidePaths));
        server.middlewares.use(refuseHostEndpoints(server.config.base));
        server.middlewares.use(refuseFilesOutside(server, allowedDirs, realRoot));
        hidePathsInHotPayloads(server, hidePaths);
      },
    },
    // Anything resolved some other way (an import in the project's code, `/@id/`) is refused when loaded.
    load: {
      order: 'pre',
      async handler(id) {
        const file = fileOfId(id);
        if (!file) return null;
        const real = realPathIfExists(file);
        if (real && !isInsideAny(real, (await lockdownPaths()).allowedDirs)) throw new Error(`Not found: ${id}`);
        return null;
      },
    },
  };
  return plugin;
}

/**
 * Puts the plugin before the project's own `enforce: 'pre'` plugins, which
 * Vite places first (its config file's plugins come before the inline
 * config's): its middlewares and load check then run before any of theirs.
 * Vite sorts each hook's plugins from this list after `configResolved`
 * (Vite 5-8), so moving it here reorders every later hook.
 */
function moveBeforeOtherPrePlugins(plugins: Plugin[], plugin: Plugin): void {
  const index = plugins.indexOf(plugin);
  if (index < 0 || !Object.isExtensible(plugins)) return;
  let first = index;
  while (first > 0 && plugins[first - 1].enforce === 'pre') first--;
  if (first === index) return;
  plugins.splice(index, 1);
  plugins.splice(first, 0, plugin);
}

/**
 * `server.fs` for a machine: strict, allowing the work folder and the real
 * dependency folders only, denying Vite's defaults and credentials' names.
 */
export async function machineFsOptions(options: LockdownOptions): Promise<Required<FileSystemServeOptions>> {
  const root = resolve(options.root);
  return {
    strict: true,
    allow: unique([root, ...(await realPaths([root, ...options.dependencyDirs]))]),
    deny: [...VITE_DEFAULT_FS_DENY, ...SECRET_FILE_DENY],
  };
}

async function resolveLockdownPaths(options: LockdownOptions): Promise<LockdownPaths> {
  const root = resolve(options.root);
  const realRoot = await realpath(root);
  const dependencyDirs = unique(options.dependencyDirs.map((dir) => resolve(dir)));
  const realDependencyDirs = await realPaths(dependencyDirs);
  return {
    realRoot,
    allowedDirs: unique([realRoot, ...realDependencyDirs]),
    hidePaths: pathHider(lockdownRewrites(unique([root, realRoot]), unique([...dependencyDirs, ...realDependencyDirs]))),
  };
}

/**
 * How error reports name paths: the project's as relative paths, the
 * dependencies' as `node_modules/...`, and the rest of the folder that holds the
 * dependencies (the service's checkout: its sources, its tooling) as `[host]/...`.
 */
export function lockdownRewrites(rootDirs: string[], dependencyDirs: string[]): PathRewrite[] {
  const hostDirs = dependencyDirs.map((dir) => dirname(dir)).filter((dir) => dir !== dirname(dir)); // never `/`
  const rewrites = new Map<string, string>();
  // A folder that is both (dependencies inside the project) is named by its first role.
  for (const [dirs, to] of [[rootDirs, ''], [dependencyDirs, 'node_modules'], [hostDirs, '[host]']] as const) {
    for (const from of dirs) if (!rewrites.has(from)) rewrites.set(from, to);
  }
  return [...rewrites].map(([from, to]) => ({ from, to }));
}

/**
 * Replaces each prefix (longest first, so the project inside a host folder is
 * still the project) where it is a whole path: with `file://`, `/@fs` or the
 * `../..` of a path relative to the process's folder (compilers' messages)
 * before it, and followed by `/` or by a character no file name goes on with.
 * An empty replacement turns `<root>/src/a.ts` into `src/a.ts` and `<root>` into `.`.
 */
export function pathHider(rewrites: PathRewrite[]): (text: string) => string {
  const sorted = [...rewrites].sort((a, b) => b.from.length - a.from.length);
  if (!sorted.length) return (text) => text;
  const replacement = new Map(sorted.map(({ from, to }) => [from, to] as const));
  const prefixes = sorted.map(({ from }) => escapeRegExp(from)).join('|');
  const pattern = new RegExp(`(?:file://|/@fs|\\.\\.(?:/\\.\\.)*)?(${prefixes})(/|(?![\\w.@+-]))`, 'g');
  return (text) =>
    text.replace(pattern, (_match, prefix: string, slash: string) => {
      const to = replacement.get(prefix) ?? '[host]';
      if (slash) return to ? `${to}/` : '';
      return to || '.';
    });
}

/**
 * Makes Vite's internal resolvers refuse files outside `allowedDirs`. CSS
 * `@import` goes through them and is inlined by reading the file directly
 * (no request, no load hook), so a project's stylesheet could otherwise pull
 * in any host file (its text then shows in the CSS or in the parse error's frame).
 */
function refuseResolvingOutside(config: ResolvedConfig, allowedDirs: () => Promise<string[]>): void {
  const createResolver = config.createResolver;
  (config as { createResolver: ResolvedConfig['createResolver'] }).createResolver = function (this: ResolvedConfig, options) {
    const resolve = createResolver.call(this, options);
    return async (id, ...rest) => {
      const resolved = await resolve(id, ...rest);
      const file = resolved ? fileOfId(resolved) : undefined;
      const real = file ? realPathIfExists(file) : undefined;
      if (real && !isInsideAny(real, await allowedDirs())) throw new Error(`Not found: ${id}`);
      return resolved;
    };
  };
}

/** Answers 404 to the endpoints that act on the host, under the base or not. */
function refuseHostEndpoints(base: string): Connect.NextHandleFunction {
  return (req, res, next) => {
    const pathname = urlPathname(req.url ?? '/');
    const paths = [pathname, decodeIfPossible(pathname), stripBase(pathname, base)].map((path) => path?.toLowerCase());
    if (paths.some((path) => path !== undefined && HOST_ENDPOINTS.some((endpoint) => path.startsWith(endpoint)))) {
      return sendJson(res, 404, NOT_FOUND);
    }
    next();
  };
}

/** Answers 404 when a file the request could be served from has its real path outside `allowedDirs`. */
function refuseFilesOutside(server: ViteDevServer, allowedDirs: string[], realRoot: string): Connect.NextHandleFunction {
  return (req, res, next) => {
    // A file that cannot be checked (no permission to read its folder) is refused too.
    refusedFile(req, server, allowedDirs, realRoot).then(
      (refused) => (refused ? sendJson(res, 404, NOT_FOUND) : next()),
      () => sendJson(res, 404, NOT_FOUND),
    );
  };
}

async function refusedFile(req: IncomingMessage, server: ViteDevServer, allowedDirs: string[], realRoot: string): Promise<boolean> {
  const path = requestPath(req.url ?? '/', server);
  for (const alternatives of await filesOfRequest(path, server)) {
    // Vite serves the first that exists (the others are not looked at).
    const real = firstDefined(alternatives, (file) => realPathUnder(file, realRoot));
    // A `/@fs/` file that does not exist is answered as one outside: Vite would answer its load error, naming the path.
    if (real === undefined ? path.startsWith('/@fs/') : !isInsideAny(real, allowedDirs)) return true;
  }
  return false;
}

/** The path a request asks Vite for: without the base and the query, percent-decoded. */
function requestPath(url: string, server: ViteDevServer): string {
  const pathname = urlPathname(url);
  // A URL outside the base is refused by Vite itself (unless in middleware mode, where it is served as is).
  return decodeIfPossible(stripBase(pathname, server.config.base) ?? pathname);
}

/**
 * The files Vite may serve for a request path, as groups of alternatives: in each group
 * Vite takes the first that exists. The query (`?raw`, `?url`...) only says how.
 */
async function filesOfRequest(path: string, server: ViteDevServer): Promise<string[][]> {
  const { root, publicDir } = server.config;
  if (path.startsWith('/@fs/')) return [[path.slice('/@fs'.length)]];
  if (path.startsWith('/@id/')) return idFiles(path.slice('/@id/'.length), server);
  return rootRelativeFiles(path, root, publicDir);
}

/** Vite's resolver looks for `/a/b` in the root first, then as an absolute path; public files are served before both. */
function rootRelativeFiles(path: string, root: string, publicDir: string): string[][] {
  const inRoot = resolve(root, `.${path}`);
  const asAbsolute = resolve(path);
  return publicDir ? [[resolve(publicDir, `.${path}`)], [inRoot, asAbsolute]] : [[inRoot, asAbsolute]];
}

/** `/@id/<specifier>`: a virtual module (`__x00__...`) is no file; anything else is what Vite resolves it to. */
async function idFiles(specifier: string, server: ViteDevServer): Promise<string[][]> {
  if (specifier.startsWith('__x00__')) return [];
  if (specifier.startsWith('/')) return rootRelativeFiles(specifier, server.config.root, server.config.publicDir);
  // What cannot be resolved is no file; Vite answers it (and the load hook still checks what it loads).
  const resolved = await clientPluginContainer(server).resolveId(specifier).catch(() => null);
  const file = resolved ? fileOfId(resolved.id) : undefined;
  return file ? [[file]] : [];
}

/**
 * Makes every error response tell no host path: Vite's error page (the error
 * as JSON for its overlay), the "outside of Vite serving allow list" page (which
 * lists the allowed folders), the wrong-base page. Only 4xx and 5xx bodies are touched.
 */
function hidePathsInErrorResponses(hidePaths: (text: string) => string): Connect.NextHandleFunction {
  return (_req, res, next) => {
    const writeHead = res.writeHead as (...args: unknown[]) => ServerResponse;
    const write = res.write as (...args: unknown[]) => boolean;
    const end = res.end as (...args: unknown[]) => ServerResponse;
    const hideIfError = (chunk: unknown) => (res.statusCode >= 400 ? hideInChunk(res, chunk, hidePaths) : chunk);
    res.writeHead = function (this: ServerResponse, statusCode: number, ...rest: unknown[]) {
      // The body may change length: Node counts it (or sends it chunked).
      if (statusCode >= 400) {
        res.removeHeader('content-length');
        for (const headers of rest) {
          if (headers && typeof headers === 'object' && !Array.isArray(headers)) dropContentLength(headers as OutgoingHttpHeaders);
        }
      }
      return writeHead.call(this, statusCode, ...rest);
    } as ServerResponse['writeHead'];
    res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      return write.call(this, hideIfError(chunk), ...rest);
    } as ServerResponse['write'];
    res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
      return end.call(this, typeof chunk === 'function' ? chunk : hideIfError(chunk), ...rest);
    } as ServerResponse['end'];
    next();
  };
}

function hideInChunk(res: ServerResponse, chunk: unknown, hidePaths: (text: string) => string): unknown {
  const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : undefined;
  if (text === undefined) return chunk;
  const hidden = hidePaths(text);
  if (hidden === text) return chunk;
  if (!res.headersSent) res.removeHeader('content-length');
  return typeof chunk === 'string' ? hidden : Buffer.from(hidden, 'utf8');
}

function dropContentLength(headers: OutgoingHttpHeaders): void {
  for (const name of Object.keys(headers)) if (name.toLowerCase() === 'content-length') delete headers[name];
}

/**
 * Cleans host paths out of what the HMR socket tells pages: error payloads,
 * `vite:invoke` replies (a refused call carries a stack) and a full reload's
 * `triggeredBy` (a file path the client does not read). Update payloads are
 * left as they are: their paths are URLs the client fetches.
 * Every message goes out through a page's socket, wrapped when it connects.
 * The payload Vite keeps while no page is connected is sent before that
 * wrapper exists, so the hot channel's `send` is wrapped too (in Vite 8
 * `server.ws` is the client environment's channel; both are wrapped if not).
 */
function hidePathsInHotPayloads(server: ViteDevServer, hidePaths: (text: string) => string): void {
  // Vite 5 has no environments: `server.ws` is its only channel to pages.
  const clientHot = (server as Partial<ViteDevServer>).environments?.client?.hot;
  for (const channel of new Set(clientHot ? [server.ws, clientHot] : [server.ws])) {
    const send = channel.send.bind(channel) as (...args: unknown[]) => void;
    channel.send = ((...args: unknown[]) => send(...args.map((arg) => hideInHotPayload(arg, hidePaths)))) as typeof channel.send;
  }
  server.ws.on('connection', (socket: { send: (data: unknown, ...rest: unknown[]) => void }) => {
    const send = socket.send.bind(socket);
    socket.send = (data, ...rest) => send(typeof data === 'string' ? hideInHotMessage(data, hidePaths) : data, ...rest);
  });
}

/** A message as sent on the socket (JSON), cleaned as hideInHotPayload does. */
function hideInHotMessage(message: string, hidePaths: (text: string) => string): string {
  if (!/"(?:error|triggeredBy)"/.test(message)) return message;
  let payload: unknown;
  try {
    payload = JSON.parse(message);
  } catch {
    return message;
  }
  const hidden = hideInHotPayload(payload, hidePaths);
  return hidden === payload ? message : JSON.stringify(hidden);
}

/** The payload with its host paths hidden, or the same object when it has none to hide. */
function hideInHotPayload(payload: unknown, hidePaths: (text: string) => string): unknown {
  if (typeof payload !== 'object' || payload === null) return payload;
  const { type, event, triggeredBy } = payload as { type?: unknown; event?: unknown; triggeredBy?: unknown };
  if (type === 'error' || (type === 'custom' && event === 'vite:invoke')) return hideInValue(payload, hidePaths);
  if (type === 'full-reload' && typeof triggeredBy === 'string') return { ...payload, triggeredBy: hidePaths(triggeredBy) };
  return payload;
}

/** A copy of `value` with `hidePaths` applied to every string in it. */
function hideInValue<T>(value: T, hidePaths: (text: string) => string, depth = 0): T {
  if (typeof value === 'string') return hidePaths(value) as T;
  if (depth > 8 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((item) => hideInValue(item, hidePaths, depth + 1)) as T;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, hideInValue(item, hidePaths, depth + 1)])) as T;
}

/** The client environment's plugin container (Vite 6-8), or the server's only one (Vite 5). */
function clientPluginContainer(server: ViteDevServer): Pick<ViteDevServer['pluginContainer'], 'resolveId'> {
  return (server as Partial<ViteDevServer>).environments?.client?.pluginContainer ?? server.pluginContainer;
}

/** The absolute file a module id names (without its query), or undefined for a virtual module. */
function fileOfId(id: string): string | undefined {
  if (id.startsWith('\0')) return undefined;
  const file = id.replace(/[?#].*$/s, '');
  return isAbsolute(file) ? file : undefined;
}

/** The path part of a request URL, before any query. */
function urlPathname(url: string): string {
  return url.replace(/[?#].*$/s, '') || '/';
}

/** `/base/x` → `/x`; undefined for a path outside the base. */
function stripBase(pathname: string, base: string): string | undefined {
  if (base === '/' || !base) return pathname;
  const withSlash = base.endsWith('/') ? base : `${base}/`;
  if (pathname === withSlash.slice(0, -1)) return '/';
  return pathname.startsWith(withSlash) ? pathname.slice(withSlash.length - 1) : undefined;
}

/** Decoded as Vite decodes request paths (`decodeURI`), or as is when malformed. */
function decodeIfPossible(path: string): string {
  try {
    return decodeURI(path);
  } catch {
    return path;
  }
}

/**
 * The real path, or undefined when there is no such file. Other errors (no
 * permission) are thrown. Synchronous: it runs for every request, and one
 * system call is quicker than a trip through libuv's thread pool.
 */
/** What a look-up of a path that does not exist fails with. */
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'ENAMETOOLONG']);

function realPathIfExists(path: string): string | undefined {
  try {
    return realpathSync.native(path);
  } catch (error) {
    if (MISSING.has((error as NodeJS.ErrnoException)?.code ?? '')) return undefined;
    throw error;
  }
}

/**
 * `realPathIfExists` for a request's file, cheaper under the work folder (whose
 * real path is `realRoot`): only the parts below it are looked at, one lstat
 * each, and a symlink among them (the linked node_modules) is left to realpath.
 */
function realPathUnder(path: string, realRoot: string): string | undefined {
  if (!path.startsWith(realRoot + sep)) return realPathIfExists(path);
  let at = realRoot;
  for (const part of path.slice(realRoot.length + 1).split(sep)) {
    at = `${at}${sep}${part}`;
    const stat = lstatIfExists(at);
    if (!stat) return undefined;
    if (stat.isSymbolicLink()) return realPathIfExists(path);
  }
  return path;
}

function lstatIfExists(path: string): Stats | undefined {
  try {
    return lstatSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if (MISSING.has((error as NodeJS.ErrnoException)?.code ?? '')) return undefined;
    throw error;
  }
}

function firstDefined<T, R>(items: T[], map: (item: T) => R | undefined): R | undefined {
  for (const item of items) {
    const found = map(item);
    if (found !== undefined) return found;
  }
  return undefined;
}

async function realPaths(paths: string[]): Promise<string[]> {
  return unique(await Promise.all(paths.map((path) => realpath(path))));
}

function isInsideAny(path: string, dirs: string[]): boolean {
  return dirs.some((dir) => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep));
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
