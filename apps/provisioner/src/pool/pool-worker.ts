import { Queue, Worker, type ConnectionOptions } from 'bullmq';
import { JobName, QueueName, type Config } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';
import { RefillPool } from './refill-pool';

/**
 * The warm pool's refill, as a BullMQ job scheduler on the `pool` queue: every
 * POOL_REFILL_EVERY_MS one provisioner tops the pools up.
 */
export async function startPoolRefills(refill: RefillPool, config: Config, connection: ConnectionOptions, logger: Logger) {
  const queue = new Queue(QueueName.Pool, { connection, prefix: config.QUEUE_PREFIX });
  const schedule = () =>
    queue.upsertJobScheduler('refill-pool', { every: config.POOL_REFILL_EVERY_MS }, { name: JobName.RefillPool, data: {}, opts: { removeOnComplete: true, removeOnFail: 100 } });
  await schedule();
  const worker = new Worker(QueueName.Pool, async () => refill.execute(), { connection, prefix: config.QUEUE_PREFIX, concurrency: 1 });
  worker.on('error', (err) => logger.error('pool worker error', { err }));
  // Start filling now rather than at the first tick.
  void refill.execute().catch((err) => logger.error('pool refill failed', { err }));
  return {
    /** A Redis that restarted lost the scheduler: register it again. */
    reschedule: schedule,
    async close() {
      await worker.close();
      await queue.close();
    },
  };
}
