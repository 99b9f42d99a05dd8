import {
  EventLog,
  QueueName,
  assertServicesReachable,
  createLogger,
  createMachineProvider,
  createRedis,
  createSessionStore,
  loadConfig,
} from '@velocity/shared';
import { createCleanupWorker } from './cleanup-worker';

/** The cleanup process: ends sessions when their expiry job comes due. */
async function main() {
  const config = loadConfig();
  const logger = createLogger('cleanup', config.LOG_LEVEL);
  await assertServicesReachable(config);
  const redis = createRedis(config.REDIS_URL);
  const store = createSessionStore(config);
  const provider = createMachineProvider(config);
  const events = new EventLog(redis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS);
  const worker = createCleanupWorker({ store, provider, events, logger }, redis, config.QUEUE_PREFIX, logger);
  worker.on('error', (err) => logger.error('worker error', { err }));
  await worker.waitUntilReady();
  logger.info('cleanup ready', { queue: QueueName.Cleanup });

  const shutdown = async (signal: string) => {
    logger.info('shutting down', { signal });
    await worker.close();
    await Promise.all([store.close(), provider.close()]);
    redis.disconnect();
    logger.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`cleanup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
