// First: it must run before any schema is built (see the module).
import './zod-jitless';
import { join } from 'node:path';
import { createLogger, type Logger, unixSocketUrl } from '@velocity/runtime';
import { MACHINE_RETRY_EXIT_CODE, UnsafePathError, errorMessage, templateFiles } from '@velocity/contracts';
import { ConfigError, defaultNodeModulesDir, loadConfig, type ContainerConfig } from './config';
import { ProjectStartError, preloadServiceToolchain, startDevServer, type DevServer } from './dev-server';
import { fetchProjectFiles, fetchProjectFilesAt, linkNodeModules, syncProjectFiles, writeProjectFiles, writtenContents, type ProjectFile } from './files';
import { fileChangesUrlOf, LiveFiles } from './live-files';
import { activitySettings, createActivityReporter, type ActivityReporter, type ActivityTracker } from './activity';
import { createClaimHandler } from './pool-claim';
import { FlyReplay } from './fly-replay';
import { createContainerServer, type ContainerServer } from './server';
import { previewHostOf, rehearsePage, warmDependencies, warmUp, warmUpOnLoopback } from './warm-up';
import { watchViteBuild, type ViteBuildWatch } from './vite-build-watch';
import { asOneHotUpdate } from './hmr-batch';
import type { ViteDevServer } from 'vite';
import { createDiagnosticsReporter, diagnosticsUrlOf, type DiagnosticsReporter } from './diagnostics-reporter';

/**
 * The program inside each preview machine: listen at once (so /health answers 503
 * while loading), fetch the project's files, start Vite on them in this same
 * server, and apply the project's live file changes from the api (see live-files.ts).
 */
const SHUTDOWN_GRACE_MS = 2_500;

async function main(): Promise<void> {
  let config: ContainerConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`preview-container: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }

  const pooled = config.claimToken !== undefined;
  let logger = createLogger('preview-container').child(pooled ? { routeId: config.sessionId } : { sessionId: config.sessionId });
  // What belongs to a session (heartbeats, live files) starts at once, or, on a pooled machine, when it is claimed.
  const session: SessionBinding = { currentVite: () => devServer?.vite };
  const activity: ActivityTracker = {
    touch: () => session.activity?.touch(),
    connectionOpened: () => session.activity?.connectionOpened(),
    connectionClosed: () => session.activity?.connectionClosed(),
  };
  // On Fly.io, misrouted requests are replayed from the first second, pooled or not (the routes token is the machine's own).
  const replay = FlyReplay.fromEnv(process.env);
  let devServer: DevServer | undefined;
  /** A pooled machine's template files as it wrote them, until its claim replaces them. */
  let startFiles: Map<string, string> | undefined;
  const claim = config.claimToken
    ? createClaimHandler(config.claimToken, async (claimed) => {
        // It waited at a low priority; the provider raises it again (an unprivileged process cannot).
        // Sent with the claim (current to `filesCursor`), or else loaded from the api.
        const files = claimed.files ?? (await fetchProjectFiles(claimed.filesUrl, claimed.machineToken));
        // The folder holds what this machine wrote at start (nothing else writes it): compared from memory.
        const { written, removed } = await syncProjectFiles(config.workDir, files, startFiles);
        // A retried claim reads the folder back: it holds the project's files now.
        startFiles = undefined;
        // Vite must not serve a template module it transformed before the claim; its watcher may not have seen the change yet.
        for (const rel of [...written, ...removed]) devServer?.vite.moduleGraph.onFileChange(join(config.workDir, rel));
        logger = logger.child({ sessionId: claimed.sessionId });
        container.health.sessionId = claimed.sessionId;
        container.health.pooled = false;
        bindSession(session, { ...config, ...claimed }, container, logger, files, claimed.filesCursor);
        logger.info('claimed', { files: files.length, written: written.length, removed: removed.length });
        return { files: files.length };
      })
    : undefined;
  const container = createContainerServer({ sessionId: config.sessionId, routeId: config.routeId, logger, activity, replay, control: claim });
  container.health.pooled = pooled;
  let stopping = false;

  const stop = async (code: number, reason: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping', { reason });
    setTimeout(() => process.exit(code), SHUTDOWN_GRACE_MS + 500).unref();
    session.activity?.stop();
    session.diagnostics?.stop();
    await Promise.allSettled([session.liveFiles?.stop(), devServer?.close(), container.close()]);
    process.exit(code);
  };
  process.once('SIGTERM', () => void stop(0, 'SIGTERM'));
  process.once('SIGINT', () => void stop(0, 'SIGINT'));

  if (process.env.FLY_MACHINE_ID && !replay) logger.warn('on Fly.io without ROUTES_URL and ROUTES_TOKEN: requests for other previews answer 404 instead of fly-replay');
  const ownUrl = await listen(config, container);
  logger.info('listening', { ...(config.listenSocket ? { socket: config.listenSocket } : { host: config.host, url: ownUrl }), routeId: config.routeId, pooled, flyReplay: replay !== null });

  try {
    if (config.nodeModulesDir === defaultNodeModulesDir()) preloadServiceToolchain(config.templateType);
    // A pooled machine starts on its template's files, which are no project's data, or on its dependency profile's config files.
    const files = pooled ? (config.startFiles ?? templateFiles(config.templateType)) : await fetchProjectFiles(config.filesUrl, config.machineToken);
    const nodeModulesRealDir = await loadFiles(config, container, logger, files);
    if (pooled) startFiles = writtenContents(files);
    if (!pooled) bindSession(session, config, container, logger, files);
    // A pooled machine reports healthy (joins the pool) only once its page was rehearsed; a profile's machine has no page yet.
    const rehearse = pooled && !config.startFiles ? () => rehearsePage(`${ownUrl}/`, previewHostOf(config.routeId)) : undefined;
    if (!stopping) devServer = await startVite(config, container, logger, () => stopping, nodeModulesRealDir, rehearse);
  } catch (error) {
    if (error instanceof ProjectStartError) {
      // The project's code, not the machine: it keeps serving the reason, so its session fails with it at once.
      logger.warn("the project's dev server could not start", { reason: error.message });
      container.setStartFailure(error.message.split(config.workDir + '/').join(''));
      return;
    }
    logger.error('start failed', { err: error });
    // An unsafe file list is the project's data: a new machine would refuse it too. Anything else (the api not
    // answering, say) is not the project's failure: the provisioner may try a new machine.
    await stop(error instanceof UnsafePathError ? 1 : MACHINE_RETRY_EXIT_CODE, 'start failed');
  }
}

/** Listens on LISTEN_SOCKET, else HOST:PORT; returns the server's own base URL, for its page rehearsal. */
async function listen(config: ContainerConfig, container: ContainerServer): Promise<string> {
  if (!config.listenSocket) return `http://${loopbackOf(config.host)}:${await container.listen(config.port, config.host)}`;
  await container.listenOnSocket(config.listenSocket);
  return unixSocketUrl(config.listenSocket);
}

/** Where this process reaches its own server: the host it listens on, or loopback for a wildcard (`::` takes IPv4 too). */
function loopbackOf(host: string): string {
  if (host === '::' || host === '0.0.0.0') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

interface SessionBinding {
  /** The dev server's Vite once it runs (a restart keeps the object). */
  currentVite: () => ViteDevServer | undefined;
  activity?: ActivityReporter;
  liveFiles?: LiveFiles;
  diagnostics?: DiagnosticsReporter;
}

/** Starts what serves one session: activity heartbeats, diagnostics, live file changes. */
function bindSession(
  session: SessionBinding,
  config: Pick<ContainerConfig, 'filesUrl' | 'machineToken' | 'workDir'>,
  container: ContainerServer,
  logger: Logger,
  files: ProjectFile[],
  /** The file-changes cursor `files` are current to; without one, live files resync first. */
  filesCursor?: string,
): void {
  session.activity = createActivityReporter({ ...activitySettings(process.env, config.filesUrl), token: config.machineToken, logger });
  session.activity.start();
  // Every change of the build state goes to the api, which streams it to the session's clients.
  session.diagnostics = createDiagnosticsReporter({ url: diagnosticsUrlOf(process.env, config.filesUrl), token: config.machineToken, tracker: container.build, logger });
  session.diagnostics.start();
  // Live file changes from the api, applied to WORK_DIR (Vite turns them into HMR); off when FILES_URL gives no file-changes URL.
  const liveFilesUrl = fileChangesUrlOf(process.env, config.filesUrl);
  if (!liveFilesUrl) return;
  session.liveFiles = new LiveFiles({
    url: liveFilesUrl,
    token: config.machineToken,
    workDir: config.workDir,
    loadSnapshot: () => fetchProjectFiles(config.filesUrl, config.machineToken),
    loadFiles: (paths) => fetchProjectFilesAt(config.filesUrl, config.machineToken, paths),
    health: container.health,
    logger,
    asOneUpdate: (paths, write) => {
      const vite = session.currentVite();
      return vite ? asOneHotUpdate(vite, config.workDir, paths, write) : write();
    },
  });
  // From here on, every change to the project's files reaches WORK_DIR (from the cursor, or after a resync that covers what changed since the load).
  session.liveFiles.seed(files, filesCursor);
  session.liveFiles.start();
}

/** Writes the files into WORK_DIR and links the shared node_modules; returns its real path. */
async function loadFiles(config: ContainerConfig, container: ContainerServer, logger: Logger, files: ProjectFile[]): Promise<string> {
  const filesStart = Date.now();
  const count = await writeProjectFiles(config.workDir, files);
  const nodeModulesRealDir = await linkNodeModules(config.workDir, config.nodeModulesDir);
  container.health.filesLoaded = true;
  logger.info('files loaded', { count, ms: Date.now() - filesStart });
  return nodeModulesRealDir;
}

async function startVite(
  config: ContainerConfig,
  container: ContainerServer,
  logger: Logger,
  stopping: () => boolean,
  nodeModulesRealDir: string,
  rehearse?: () => Promise<void>,
): Promise<DevServer | undefined> {
  const viteStart = Date.now();
  let buildWatch: ViteBuildWatch | undefined;
  const devServer = await startDevServer({
    workDir: config.workDir,
    templateType: config.templateType,
    nodeModulesRealDir,
    hmrClientPort: config.hmrClientPort,
    optimizeDeps: config.optimizeDeps,
    // On every server Vite makes: a restart (the project's vite.config edited) would drop hooks set on the first.
    onServer: (server, lockdown) => {
      buildWatch?.close();
      buildWatch = watchViteBuild(server, container.build, { root: config.workDir, dependencyDirs: lockdown.dependencyDirs, logger });
    },
  });
  if (stopping()) {
    await devServer.close();
    return undefined;
  }
  const warm = await warmUpOnLoopback(devServer, (origin) =>
    // A profile's pooled machine has no page yet: it pre-bundles the packages its projects import instead.
    config.startFiles
      ? warmDependencies(origin, config.optimizeDeps)
      : warmUp(origin, undefined, { onModule: (path, status) => container.build.moduleRequestFinished(path, status) }),
  ).catch((error) => ({ requests: 0, failed: [errorMessage(error)] }));
  if (warm.failed.length > 0) logger.warn('first page load had failures', { failed: warm.failed });
  container.setDevServer(devServer);
  await rehearse?.().catch((error) => logger.warn('page rehearsal failed', { err: error }));
  container.health.devServerCheck = () => devServer.vite.transformRequest('/@vite/client').then((result) => result !== null);
  const { vite, configFile, ownDependencies } = devServer.toolchain;
  logger.info('dev server ready', {
    ms: Date.now() - viteStart,
    warmUpRequests: warm.requests,
    vite: vite.version,
    projectConfig: configFile !== undefined,
    ownDependencies,
  });
  return devServer;
}

main().catch((error) => {
  process.stderr.write(`preview-container: ${errorMessage(error)}\n`);
  process.exit(MACHINE_RETRY_EXIT_CODE);
});
