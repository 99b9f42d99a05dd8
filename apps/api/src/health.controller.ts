import { Controller, Get, Inject, ServiceUnavailableException } from '@nestjs/common';
import type Redis from 'ioredis';
import { checkReadiness, notReadyBody, redisCheck, storeCheck, type Config, type SessionStore } from '@velocity/shared';
import { CONFIG, REDIS, SESSION_STORE } from './tokens';

/**
 * Liveness and readiness of the api (plain code, no @nestjs/terminus: two checks
 * with a timeout each are a few lines, and the workers share them).
 *
 * - `GET /health`: liveness, 200 while the process answers; checks nothing else,
 *   so an outage of Redis or Postgres does not get healthy replicas restarted.
 * - `GET /ready`: Redis (PING on the api's connection) and Postgres (a read through
 *   the SessionStore), each within READY_TIMEOUT_MS; 503 naming what failed.
 */
@Controller()
export class HealthController {
  private readonly started = Date.now();

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
  ) {}

  @Get('health')
  health() {
    return { status: 'ok', app: 'api', pid: process.pid, uptimeSeconds: Math.round((Date.now() - this.started) / 1000) };
  }

  @Get('ready')
  async ready() {
    const report = await checkReadiness({ redis: redisCheck(this.redis), postgres: storeCheck(this.store) }, this.config.READY_TIMEOUT_MS);
    if (report.status !== 'ready') throw new ServiceUnavailableException(notReadyBody(report));
    return { app: 'api', ...report };
  }
}
