import { getQueueToken } from '@nestjs/bullmq';
import { Injectable, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { Queue } from 'bullmq';
import { Histogram } from 'prom-client';
import { ALL_QUEUES } from '@velocity/contracts';
import { createMetricsRegistry, registerQueueGauge, registerSessionGauge } from '@velocity/ops';
import { type Logger } from '@velocity/runtime';
import { type SessionQueries } from '@velocity/session-store';
import { LOGGER, SESSION_STORE } from '../tokens';
import { PREVIEW_ROUTE } from '../common/request-context';

/**
 * The api's metrics: system state read on each scrape (`vp_queue_jobs{queue,state}`
 * from BullMQ, `vp_sessions{status}` from the database) and its own requests
 * (`vp_http_request_seconds{method,route,status}`). The provisioning histograms
 * are the provisioner's (its operator server), where the steps run.
 */
@Injectable()
export class ApiMetrics implements OnModuleInit {
  readonly registry = createMetricsRegistry('api');
  readonly httpSeconds = new Histogram({
    name: 'vp_http_request_seconds',
    help: 'Api requests by method, route pattern and status (SSE streams count their whole duration)',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60],
    registers: [this.registry],
  });

  constructor(private readonly moduleRef: ModuleRef) {}

  /** The queues and the store belong to the app module: looked up once every provider exists. */
  onModuleInit() {
    const logger = this.moduleRef.get<Logger>(LOGGER, { strict: false });
    const queues = ALL_QUEUES.map((name) => this.moduleRef.get<Queue>(getQueueToken(name), { strict: false }));
    registerQueueGauge(this.registry, () => queues, logger);
    const store = this.moduleRef.get<SessionQueries>(SESSION_STORE, { strict: false });
    if (store.countLiveSessions) registerSessionGauge(this.registry, () => store.countLiveSessions!(), logger);
    else logger.warn('metrics: this session store cannot count sessions; vp_sessions stays empty');
  }

  /** One finished request; the route is the matched pattern, never the raw path (labels stay few). */
  observeRequest = (r: { method: string; path: string; status: number; seconds: number; route?: string }) => {
    const route = r.route === PREVIEW_ROUTE
      ? PREVIEW_ROUTE
      : r.path === '/admin/queues' || r.path.startsWith('/admin/queues/')
        ? '/admin/queues'
        : r.path === '/metrics'
          ? '/metrics'
          : (r.route ?? 'unmatched');
    this.httpSeconds.observe({ method: r.method, route, status: String(r.status) }, r.seconds);
  };
}
