import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import type Redis from 'ioredis';
import { z } from 'zod';
import { EventLog, tierSchema, type Config, type Logger, type SessionStore } from '@velocity/shared';
import { parseOr400 } from '../common/validation';
import { CONFIG, EVENT_LOG, LOGGER, REDIS, SESSION_STORE } from '../tokens';
import { SessionEventStream } from './session-event-stream';
import { SessionsService } from './sessions.service';
import { CurrentUser } from '../auth/auth.guard';
import type { AuthUser } from '../auth/auth-user';

const createSessionBody = z.object({ projectId: z.string().uuid(), tier: tierSchema.default('free') }).strict();
const sessionIdParam = z.string().uuid();
/** At most a week in one call; the tier's maximum session length is the real bound. */
const extendSessionBody = z.object({ seconds: z.number().int().positive().max(7 * 24 * 3600) }).strict();
// At most 19 digits a part: every such number fits the 64 bits of a Redis stream id.
const lastEventIdHeader = z.string().regex(/^\d{1,19}-\d{1,19}$/, 'must be a stream id like 1700000000000-0').optional();

@Controller('v1/sessions')
export class SessionsController {
  constructor(
    private readonly sessions: SessionsService,
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
    @Inject(EVENT_LOG) private readonly events: EventLog,
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** Asks for a preview: 202 at once; the URL comes later, on the events stream. */
  @Post()
  @HttpCode(202)
  async create(@Body() body: unknown, @CurrentUser() user: AuthUser) {
    const { projectId, tier } = parseOr400(createSessionBody, body ?? {});
    const created = await this.sessions.create(user, projectId, tier);
    this.logger.info('session requested', { sessionId: created.sessionId, projectId, tier });
    return created;
  }

  @Get(':id')
  get(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    return this.sessions.get(user, parseOr400(sessionIdParam, id, 'id'));
  }

  /** Server-Sent Events: progress, then `ready` with the URL or `failed` with the reason. */
  @Get(':id/events')
  async streamEvents(@Param('id') id: string, @Req() req: Request, @Res() res: Response, @CurrentUser() user: AuthUser) {
    const sessionId = parseOr400(sessionIdParam, id, 'id');
    const lastEventId = parseOr400(lastEventIdHeader, req.header('last-event-id') ?? undefined, 'Last-Event-ID') ?? '0';
    // The row is written before the first event, so a session without a row (or another user's) is not there.
    await this.sessions.owned(user, sessionId);
    const stream = new SessionEventStream(
      sessionId,
      { events: this.events, store: this.store, reader: this.redis.duplicate(), logger: this.logger.child({ sessionId }) },
      { heartbeatMs: Math.min(this.config.SSE_HEARTBEAT_MS, 15_000), retryMs: 2000 },
    );
    await stream.pipe(req, res, lastEventId);
  }

  /** Moves `expires_at` later, up to the tier's maximum; 409 beyond it or when the session is not active. */
  @Post(':id/extend')
  @HttpCode(200)
  async extend(@Param('id') id: string, @Body() body: unknown, @CurrentUser() user: AuthUser) {
    const sessionId = parseOr400(sessionIdParam, id, 'id');
    const { seconds } = parseOr400(extendSessionBody, body ?? {});
    const extended = await this.sessions.extend(user, sessionId, seconds);
    this.logger.info('session extended', { sessionId, seconds, expiresAt: extended.expiresAt });
    return extended;
  }

  /** Stops the session now: 202, then `ended` (or `failed`, when it was still provisioning) on its events. */
  @Delete(':id')
  @HttpCode(202)
  async stop(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    const sessionId = parseOr400(sessionIdParam, id, 'id');
    const stopped = await this.sessions.stop(user, sessionId);
    this.logger.info('session stop requested', { sessionId, status: stopped.status, stop: stopped.stop });
    return stopped;
  }
}
