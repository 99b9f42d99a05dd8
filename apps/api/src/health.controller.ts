import { Controller, Get, Inject, ServiceUnavailableException } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type Redis from 'ioredis';
import { checkReadiness, notReadyBody, redisCheck, storeCheck } from '@velocity/ops';
import { type Config } from '@velocity/contracts';
import { type SessionRecords } from '@velocity/session-store';
import { CONFIG, REDIS, SESSION_STORE } from './tokens';
import { ApiEndpoint } from './openapi/api-endpoint';
import { healthSchema, readySchema } from './openapi/schemas';

/**
 * Liveness and readiness of the api (plain code, no @nestjs/terminus: two checks
 * with a timeout each are a few lines, and the workers share them).
 *
 * - `GET /health`: liveness, 200 while the process answers; checks nothing else,
 *   so an outage of Redis or Postgres does not get healthy replicas restarted.
 * - `GET /ready`: Redis (PING on the api's connection) and Postgres (a read through
 *   the SessionStore), each within READY_TIMEOUT_MS; 503 naming what failed.
 */
@ApiTags('operations')
@Controller()
export class HealthController {
  private readonly started = Date.now();

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(SESSION_STORE) private readonly store: SessionRecords,
  ) {}

  @Get('health')
  @ApiEndpoint({
    summary: 'Liveness',
    description: 'Answers while the process answers; checks nothing else, so a Redis or Postgres outage does not get healthy replicas restarted.',
    auth: 'public',
    ok: { 200: { description: 'Alive', schema: healthSchema } },
  })
  health() {
    return { status: 'ok', app: 'api', pid: process.pid, uptimeSeconds: Math.round((Date.now() - this.started) / 1000) };
  }

  @Get('ready')
  @ApiEndpoint({
    summary: 'Readiness: Redis and Postgres',
    description: 'Redis (PING) and Postgres (a read through the session store), each within READY_TIMEOUT_MS.',
    auth: 'public',
    ok: { 200: { description: 'Ready', schema: readySchema } },
    errors: { 503: 'Not ready: `message` names what failed (`not ready: redis failing`), with `status`, `checks` and `failing`' },
  })
  async ready() {
    const report = await checkReadiness({ redis: redisCheck(this.redis), postgres: storeCheck(this.store) }, this.config.READY_TIMEOUT_MS);
    if (report.status !== 'ready') throw new ServiceUnavailableException(notReadyBody(report));
    return { app: 'api', ...report };
  }
}
