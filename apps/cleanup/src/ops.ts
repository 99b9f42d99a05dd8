import type { Worker } from 'bullmq';
import type Redis from 'ioredis';
import { QueueName, type Config } from '@velocity/contracts';
import { createMetricsRegistry, instrumentWorker, redisCheck, startOpsServer, storeCheck } from '@velocity/ops';
import { type Logger } from '@velocity/runtime';
import { type SessionRecords } from '@velocity/session-store';

/** The cleanup worker's operator server on CLEANUP_METRICS_PORT: /metrics (its jobs by outcome), /health, /ready. */
export async function startCleanupOps(config: Config, deps: { redis: Redis; store: SessionRecords }, worker: Worker, logger: Logger) {
  const registry = createMetricsRegistry('cleanup');
  instrumentWorker(registry, worker, QueueName.Cleanup);
  const server = await startOpsServer({
    app: 'cleanup',
    host: config.METRICS_HOST,
    port: config.CLEANUP_METRICS_PORT,
    registry,
    credentials: config,
    checks: { redis: redisCheck(deps.redis), postgres: storeCheck(deps.store) },
    readyTimeoutMs: config.READY_TIMEOUT_MS,
    logger,
  });
  return { registry, close: async () => server?.close() };
}
