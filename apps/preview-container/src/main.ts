import { createLogger, type Logger } from '../../../libs/shared/src/logger';
import { errorMessage } from '../../../libs/shared/src/errors';
import { ConfigError, loadConfig, type ContainerConfig } from './config';
import { startDevServer, type DevServer } from './dev-server';
import { fetchProjectFiles, linkNodeModules, writeProjectFiles } from './files';
import { createViteProxy } from './proxy';
import { fileChangesUrlOf, LiveFiles } from './live-files';
import { activitySettings, createActivityReporter } from './activity';
import { FlyReplay } from './fly-replay';
import { createContainerServer, type ContainerServer } from './server';
import { warmUp } from './warm-up';

/**
 * The program inside each preview machine: listen at once (so /health answers 503
 * while loading), fetch the project's files, start Vite on them, proxy to it, and
 * apply the project's live file changes from the api (see live-files.ts).
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

  const logger = createLogger('preview-container').child({ sessionId: config.sessionId });
  const activity = createActivityReporter({ ...activitySettings(process.env, config.filesUrl), token: config.machineToken, logger });
  const replay = FlyReplay.fromEnv(process.env, config.filesUrl);
  const container = createContainerServer({ sessionId: config.sessionId, basePath: config.basePath, logger, activity, replay });
  // Live file changes from the api, applied to WORK_DIR (Vite turns them into HMR); off when FILES_URL gives no file-changes URL.
  const liveFilesUrl = fileChangesUrlOf(process.env, config.filesUrl);
  const liveFiles = liveFilesUrl
    ? new LiveFiles({
        url: liveFilesUrl,
        token: config.machineToken,
        workDir: config.workDir,
        loadSnapshot: () => fetchProjectFiles(config.filesUrl, config.machineToken),
        health: container.health,
        logger,
      })
    : undefined;
  let devServer: DevServer | undefined;
  let stopping = false;

  const stop = async (code: number, reason: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping', { reason });
    setTimeout(() => process.exit(code), SHUTDOWN_GRACE_MS + 500).unref();
    activity.stop();
    await Promise.allSettled([liveFiles?.stop(), devServer?.close(), container.close()]);
    process.exit(code);
  };
  process.once('SIGTERM', () => void stop(0, 'SIGTERM'));
  process.once('SIGINT', () => void stop(0, 'SIGINT'));

  const port = await container.listen(config.port, config.host);
  logger.info('listening', { host: config.host, port, basePath: config.basePath });
  activity.start();

  try {
    devServer = await start(config, container, logger, () => stopping, liveFiles);
  } catch (error) {
    logger.error('start failed', { err: error });
    await stop(1, 'start failed');
  }
}

async function start(
  config: ContainerConfig,
  container: ContainerServer,
  logger: Logger,
  stopping: () => boolean,
  liveFiles?: LiveFiles,
): Promise<DevServer | undefined> {
  const filesStart = Date.now();
  const files = await fetchProjectFiles(config.filesUrl, config.machineToken);
  const count = await writeProjectFiles(config.workDir, files);
  const nodeModulesRealDir = await linkNodeModules(config.workDir, config.nodeModulesDir);
  container.health.filesLoaded = true;
  logger.info('files loaded', { count, ms: Date.now() - filesStart });
  if (stopping()) return undefined;
  // From here on, every change to the project's files reaches WORK_DIR (a resync first covers what changed since the load).
  liveFiles?.seed(files);
  liveFiles?.start();

  const viteStart = Date.now();
  const devServer = await startDevServer({
    workDir: config.workDir,
    basePath: config.basePath,
    templateType: config.templateType,
    nodeModulesRealDir,
    hmrClientPort: config.hmrClientPort,
  });
  if (stopping()) {
    await devServer.close();
    return undefined;
  }
  const warm = await warmUp(devServer.origin, config.basePath).catch((error) => ({ requests: 0, failed: [errorMessage(error)] }));
  if (warm.failed.length > 0) logger.warn('first page load had failures', { failed: warm.failed });
  container.setProxy(createViteProxy(devServer.origin, config.basePath, logger));
  container.health.devServerProbeUrl = `${devServer.origin}${config.basePath}@vite/client`;
  logger.info('dev server ready', { port: devServer.port, ms: Date.now() - viteStart, warmUpRequests: warm.requests });
  return devServer;
}

main().catch((error) => {
  process.stderr.write(`preview-container: ${errorMessage(error)}\n`);
  process.exit(1);
});
