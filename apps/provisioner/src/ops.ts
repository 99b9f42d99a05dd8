import type { Worker } from 'bullmq';
import type Redis from 'ioredis';
import { ProvisionMetrics, createMetricsRegistry, instrumentWorker, redisCheck, startOpsServer, storeCheck } from '@velocity/ops';
import { QueueName, type Config } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';
import { type SessionRecords } from '@velocity/session-store';
import { metricsObserver, type ProvisionObserver } from './provision-observer';

/**
 * The provisioner's operator side: its metrics (step and time-to-ready histograms,
 * failures) and its server on PROVISIONER_METRICS_PORT with /metrics, /health, /ready.
 */
export async function startProvisionerOps(config: Config, deps: { redis: Redis; store: SessionRecords }, logger: Logger) {
  const registry = createMetricsRegistry('provisioner');
  const metrics = new ProvisionMetrics(registry);
  const server = await startOpsServer({
    app: 'provisioner',
    host: config.METRICS_HOST,
    port: config.PROVISIONER_METRICS_PORT,
    registry,
    credentials: config,
    checks: { redis: redisCheck(deps.redis), postgres: storeCheck(deps.store) },
    readyTimeoutMs: config.READY_TIMEOUT_MS,
    logger,
  });
  const observer: ProvisionObserver = metricsObserver(metrics);
  return {
    registry,
    observer,
    instrument: (worker: Worker) => instrumentWorker(registry, worker, QueueName.Sessions),
    close: async () => server?.close(),
  };
}
