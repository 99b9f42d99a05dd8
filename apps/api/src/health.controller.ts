import { Controller, Get, Inject, ServiceUnavailableException } from '@nestjs/common';
import type Redis from 'ioredis';
import type { SessionStore } from '@velocity/shared';
import { REDIS, SESSION_STORE } from './tokens';

/** Liveness of the api and what it depends on. */
@Controller('health')
export class HealthController {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
  ) {}

  @Get()
  async health() {
    const [redis, postgres] = await Promise.all([
      this.redis.ping().then(() => 'ok', () => 'failing'),
      this.store.getSession('00000000-0000-0000-0000-000000000000').then(() => 'ok', () => 'failing'),
    ]);
    const body = { status: redis === 'ok' && postgres === 'ok' ? 'ok' : 'failing', redis, postgres };
    if (body.status !== 'ok') throw new ServiceUnavailableException(body);
    return body;
  }
}
