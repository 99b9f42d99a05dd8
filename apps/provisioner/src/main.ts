import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { Queue } from 'bullmq';
import { EventLog, assertServicesReachable, createRedis } from '@velocity/ops';
import { FileChangeLog, QueueName, loadConfig, loadDotEnv, parseDependencyPool, parseWarmPool } from '@velocity/contracts';
import { Turns, createLogger } from '@velocity/runtime';
import { createMachineProvider, faultsOf, WarmPool } from '@velocity/machines';
import { createSessionStore } from '@velocity/session-store';
import { RefillPool, drainPool } from './pool/refill-pool';
import { startPoolRefills } from './pool/pool-worker';
import { createProvisionWorker } from './provision-worker';
import { startProvisionerOps } from './ops';
import { DependencyCache } from './dependencies/dependency-cache';

/** The provisioner process: one BullMQ worker on the `sessions` queue. */
async function main() {
  loadDotEnv();
  const config = loadConfig();
  const logger = createLogger('provisioner', config.LOG_LEVEL);
  await assertServicesReachable(config);
  const redis = createRedis(config.REDIS_URL);
  const store = createSessionStore(config);
  const provider = createMachineProvider(config, { redis });
  logger.info(
    provider.isolation !== 'none'
      ? `machine isolation: ${provider.isolation}`
      : `machine isolation: none; projects with config files are ${config.MACHINE_SANDBOX === 'none' ? 'allowed (MACHINE_SANDBOX=none)' : 'refused unless MACHINE_SANDBOX=none'}`,
    { isolation: provider.isolation, machineSandbox: config.MACHINE_SANDBOX, ...('sandboxProblem' in provider && provider.sandboxProblem ? { sandboxProblem: provider.sandboxProblem } : {}) },
  );
  const cleanupQueue = new Queue(QueueName.Cleanup, { connection: redis, prefix: config.QUEUE_PREFIX });
  // A connection of its own: MULTI on BullMQ's connection copies every script BullMQ defined on it.
  const eventsRedis = createRedis(config.REDIS_URL);
  const events = new EventLog(eventsRedis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS);
  const ops = await startProvisionerOps(config, { redis, store }, logger);
  const poolTargets = parseWarmPool(config.WARM_POOL);
  const dependencyPool = parseDependencyPool(config.DEPENDENCY_POOL);
  const pool = poolTargets.length > 0 || dependencyPool.sets > 0 ? new WarmPool(redis, config.QUEUE_PREFIX) : null;
  const changes = pool ? new FileChangeLog(eventsRedis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS) : null;
  const turns = new Turns(config.PROVISION_TURNS || availableParallelism());
  const dependencies = new DependencyCache(resolve(config.DEPENDENCY_CACHE_DIR), config.NPM_REGISTRY_URL);
  const worker = createProvisionWorker(
    { config, store, provider, events, cleanupQueue, logger, faults: faultsOf(config), observer: ops.observer, pool, changes, turns, dependencies },
    redis,
    logger,
  );
  worker.on('error', (err) => logger.error('worker error', { err }));
  ops.instrument(worker);
  await worker.waitUntilReady();
  const workerName = `provisioner-${process.pid}`;
  const sessionsQueue = new Queue(QueueName.Sessions, { connection: redis, prefix: config.QUEUE_PREFIX });
  const provisioning = async () => Object.values(await sessionsQueue.getJobCounts('active', 'waiting', 'prioritized')).some((n) => n > 0);
  const poolDeps = pool ? { config, provider, pool, targets: poolTargets, dependencyPool, redis, logger, workerName, provisioning } : null;
  const refills = poolDeps ? await startPoolRefills(new RefillPool(poolDeps), config, redis, logger) : null;
  // A Redis that restarted lost the refill schedule with everything else.
  if (refills) redis.on('ready', () => void refills.reschedule().catch((err) => logger.error('could not schedule pool refills', { err })));
  logger.info('provisioner ready', {
    queue: QueueName.Sessions,
    concurrency: config.PROVISION_CONCURRENCY,
    turns: turns.slots,
    provider: provider.name,
    warmPool: config.WARM_POOL ?? null,
    dependencyPool: config.DEPENDENCY_POOL ?? null,
  });

  const shutdown = async (signal: string) => {
    logger.info('shutting down', { signal, graceMs: config.SHUTDOWN_GRACE_MS });
    // Take no new jobs; let the ones in hand finish, and hand back what is still running after the grace.
    const closing = worker.close();
    const handBack = setTimeout(() => worker.cancelAllJobs('shutdown'), config.SHUTDOWN_GRACE_MS);
    await closing;
    clearTimeout(handBack);
    await refills?.close();
    if (poolDeps) await drainPool(poolDeps).catch((err) => logger.error('could not drain the pool', { err }));
    await Promise.all([cleanupQueue.close(), sessionsQueue.close()]);
    await ops.close();
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
