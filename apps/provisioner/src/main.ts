import { Queue } from 'bullmq';
import {
  EventLog,
  QueueName,
  assertServicesReachable,
  createLogger,
  createMachineProvider,
  createRedis,
  createSessionStore,
  faultsOf,
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
  // A connection of its own: MULTI on BullMQ's connection copies every script BullMQ defined on it.
  const eventsRedis = createRedis(config.REDIS_URL);
  const events = new EventLog(eventsRedis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS);
  const worker = createProvisionWorker({ config, store, provider, events, cleanupQueue, logger, faults: faultsOf(config) }, redis, logger);
  worker.on('error', (err) => logger.error('worker error', { err }));
  await worker.waitUntilReady();
  logger.info('provisioner ready', { queue: QueueName.Sessions, concurrency: config.PROVISION_CONCURRENCY, provider: provider.name });

  const shutdown = async (signal: string) => {
    logger.info('shutting down', { signal, graceMs: config.SHUTDOWN_GRACE_MS });
    // Take no new jobs; let the ones in hand finish, and hand back what is still running after the grace.
    const closing = worker.close();
    const handBack = setTimeout(() => worker.cancelAllJobs('shutdown'), config.SHUTDOWN_GRACE_MS);
    await closing;
    clearTimeout(handBack);
    await cleanupQueue.close();
    await Promise.all([store.close(), provider.close()]);
    redis.disconnect();
    eventsRedis.disconnect();
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
