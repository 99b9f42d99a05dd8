import { Queue } from 'bullmq';
import { EventLog, assertServicesReachable, createRedis } from '@velocity/ops';
import { QueueName, loadConfig, loadDotEnv } from '@velocity/contracts';
import { WarmPool, createMachineProvider } from '@velocity/machines';
import { createLogger } from '@velocity/runtime';
import { createSessionStore } from '@velocity/session-store';
import type { CleanupDeps } from './cleanup-deps';
import { createCleanupWorker, scheduleSweep } from './cleanup-worker';
import { startCleanupOps } from './ops';

/**
 * The cleanup process: ends sessions when their expiry job comes due, and every
 * CLEANUP_SWEEP_EVERY_MS sweeps for what those jobs missed (expired, idle and
 * stuck sessions, lost provisioning jobs, orphaned machines).
 */
async function main() {
  loadDotEnv();
  const config = loadConfig();
  const logger = createLogger('cleanup', config.LOG_LEVEL);
  await assertServicesReachable(config);
  const redis = createRedis(config.REDIS_URL);
  const store = createSessionStore(config);
  const provider = createMachineProvider(config, { redis });
  const events = new EventLog(redis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS);
  const sessionsQueue = new Queue(QueueName.Sessions, { connection: redis, prefix: config.QUEUE_PREFIX });
  const cleanupQueue = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
  const deps: CleanupDeps = { config, store, provider, events, logger, redis, sessionsQueue, cleanupQueue, pool: new WarmPool(redis, config.QUEUE_PREFIX) };
  const worker = createCleanupWorker(deps, redis);
  const ops = await startCleanupOps(config, { redis, store }, worker, logger);
  worker.on('error', (err) => logger.error('worker error', { err }));
  worker.on('failed', (job, err) => logger.error('cleanup job failed', { jobId: job?.id, name: job?.name, sessionId: job?.data?.sessionId, err }));
  await worker.waitUntilReady();
  await scheduleSweep(deps);
  // A Redis that restarted has lost the scheduler with everything else: register it again.
  redis.on('ready', () => void scheduleSweep(deps).catch((err) => logger.error('could not schedule the sweep', { err })));
  logger.info('cleanup ready', { queue: QueueName.Cleanup, sweepEveryMs: config.CLEANUP_SWEEP_EVERY_MS, batchSize: config.CLEANUP_BATCH_SIZE });

  const shutdown = async (signal: string) => {
    logger.info('shutting down', { signal });
    await worker.close();
    await Promise.all([sessionsQueue.close(), cleanupQueue.close()]);
    await ops.close();
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
