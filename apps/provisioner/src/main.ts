import { Queue } from 'bullmq';
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
import { createProvisionWorker } from './provision-worker';

/** The provisioner process: one BullMQ worker on the `sessions` queue. */
async function main() {
  const config = loadConfig();
  const logger = createLogger('provisioner', config.LOG_LEVEL);
  await assertServicesReachable(config);
  const redis = createRedis(config.REDIS_URL);
  const store = createSessionStore(config);
  const provider = createMachineProvider(config);
  const cleanupQueue = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
  const events = new EventLog(redis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS);
  const worker = createProvisionWorker({ config, store, provider, events, cleanupQueue, logger }, redis, logger);
  worker.on('error', (err) => logger.error('worker error', { err }));
  await worker.waitUntilReady();
  logger.info('provisioner ready', { queue: QueueName.Sessions, concurrency: config.PROVISION_CONCURRENCY, provider: provider.name });

  const shutdown = async (signal: string) => {
    logger.info('shutting down', { signal });
    // close() waits for the jobs in hand to finish; new ones stay in the queue for others.
    await worker.close();
    await cleanupQueue.close();
    await Promise.all([store.close(), provider.close()]);
    redis.disconnect();
    logger.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`provisioner: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
