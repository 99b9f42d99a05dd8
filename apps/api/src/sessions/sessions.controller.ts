import { BeforeApplicationShutdown, Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { StreamWatcher, EventLog } from '@velocity/ops';
import { tierSchema, type Config } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';
import { type SessionRecords } from '@velocity/session-store';
import { parseOr400 } from '../common/validation';
import { GoneSessions } from '../common/gone-sessions';
import { CONFIG, EVENT_LOG, LOGGER, STREAM_WATCHER, SESSION_STORE } from '../tokens';
import { SessionEventStream } from './session-event-stream';
import { SessionsService } from './sessions.service';
import { StreamLeases, type StreamLease } from './stream-leases';
import { CurrentUser } from '../auth/auth.guard';
import type { AuthUser } from '../auth/auth-user';
import { ApiEndpoint, ref, SCHEMAS } from '../openapi/api-endpoint';
import { createdSessionSchema, extendedSessionSchema, sessionListSchema, sessionViewSchema, stoppedSessionSchema } from '../openapi/schemas';
import { listQueryShape, parseListQuery } from '../common/listing';

export const createSessionBody = z.object({ projectId: z.string().uuid(), tier: tierSchema.default('free') }).strict();
export const sessionIdParam = z.string().uuid();
export const listSessionsQuery = z.object({ status: z.enum(['live', 'all'], 'must be live or all').default('live'), ...listQueryShape }).strict();
/** At most a week in one call; the tier's maximum session length is the real bound. */
export const extendSessionBody = z.object({ seconds: z.number().int().positive().max(7 * 24 * 3600) }).strict();
// At most 19 digits a part: every such number fits the 64 bits of a Redis stream id.
export const lastEventIdHeader = z.string().regex(/^\d{1,19}-\d{1,19}$/, 'must be a stream id like 1700000000000-0').optional();

const idParam = { id: { schema: sessionIdParam, description: 'The session id' } };
const notFound = 'No such session (or another user\'s: answered alike)';

@ApiTags('sessions')
@Controller('v1/sessions')
export class SessionsController implements BeforeApplicationShutdown {
  /** Open event streams: they last as long as their sessions, so shutdown ends them (the HTTP server waits for open connections). */
  private readonly streams = new Set<SessionEventStream>();
  private shuttingDown = false;

  constructor(
    private readonly sessions: SessionsService,
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionRecords,
    @Inject(EVENT_LOG) private readonly events: EventLog,
    @Inject(STREAM_WATCHER) private readonly watcher: StreamWatcher,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly gone: GoneSessions,
    private readonly leases: StreamLeases,
  ) {}

  /**
   * Asks for a preview: 202 at once; the URL comes later, on the events stream.
   * With `Accept: text/event-stream` the answer is that stream itself: one
   * request instead of two, so `ready` reaches the client a round trip sooner.
   */
  @Post()
  @HttpCode(202)
  @ApiEndpoint({
    summary: 'Ask for a preview of a project',
    description:
      'Answers at once; the preview URL comes later, on `eventsUrl` (`ready`), once the session is committed, its machine exists and the URL answered. ' +
      'With `Accept: text/event-stream`, the 202 is the session\'s events stream itself (as `GET /v1/sessions/{id}/events`, from `queued`, whose `sessionId` names the session; ' +
      '`Location` is its URL): one request instead of two. A client that loses the stream resumes on `eventsUrl` with `Last-Event-ID`.',
    auth: 'user',
    body: { schema: createSessionBody },
    ok: {
      202: {
        description: 'Queued: the session as JSON, or with `Accept: text/event-stream` its events (frames as on `GET /v1/sessions/{id}/events`)',
        schema: createdSessionSchema,
        content: { 'text/event-stream': { schema: { ...ref(SCHEMAS.sessionEvent), description: 'The `data` of each frame; `event:` is its `type`' } } },
      },
    },
    errors: {
      400: '`projectId` or `tier` (or an unknown field) is not valid; the message and `field` name it',
      403: '`tier`: a session of a higher tier than the account\'s (`app_metadata.tier`)',
      404: '`projectId`: no such project (or another user\'s)',
      429: {
        description:
          'Over a limit, named in `limit`: RATE_LIMIT_SESSIONS_PER_MINUTE (requests a minute), QUOTA_FREE_CONCURRENT / QUOTA_PRO_CONCURRENT (live sessions at once), ' +
          'or, with `Accept: text/event-stream`, QUOTA_FREE_STREAMS / QUOTA_PRO_STREAMS (open event streams at once; no session is made)',
        headers: ['Retry-After'],
      },
    },
  })
  async create(@Body() body: unknown, @CurrentUser() user: AuthUser, @Req() req: Request, @Res() res: Response) {
    const { projectId, tier } = parseOr400(createSessionBody, body ?? {});
    // JSON unless the client prefers the stream (no Accept, or `*/*`, gets JSON).
    const wantsStream = req.accepts(['application/json', 'text/event-stream']) === 'text/event-stream';
    // The stream's lease first: a user at the streams limit gets no session they could not follow.
    const lease = wantsStream ? await this.leases.take(user) : null;
    let created: Awaited<ReturnType<SessionsService['create']>>;
    try {
      created = await this.sessions.create(user, projectId, tier);
    } catch (err) {
      lease?.release();
      throw err;
    }
    const { view, queued } = created;
    this.logger.info('session requested', { sessionId: view.sessionId, projectId, tier });
    if (!lease) {
      res.status(202).json(view);
      return;
    }
    await this.follow(view.sessionId, lease, (stream) => stream.pipe(req, res, '0', { status: 202, headers: { location: view.sessionUrl }, first: queued }));
  }

  @Get()
  @ApiEndpoint({
    summary: "The user's sessions, newest first, a page at a time",
    description: '`status=live` (the default): those not ended and not failed; `all`: every one. `nextCursor` (null on the last page) asks for the next page. With auth off, every session.',
    auth: 'user',
    query: {
      status: { schema: listSessionsQuery.shape.status, description: '`live` (default) or `all`' },
      limit: { schema: listQueryShape.limit, description: 'Sessions on a page, 1-100 (default 20)' },
      cursor: { schema: z.string(), description: '`nextCursor` of the page before' },
    },
    ok: { 200: { description: 'A page of sessions', schema: sessionListSchema } },
    errors: { 400: '`status`: not live or all; `limit`: not 1-100; `cursor`: not a cursor this api gave' },
  })
  list(@Query() query: unknown, @CurrentUser() user: AuthUser) {
    return this.sessions.list(user, parseListQuery(listSessionsQuery, query));
  }

  @Get(':id')
  @ApiEndpoint({
    summary: 'A session',
    auth: 'user',
    params: idParam,
    ok: { 200: { description: 'The session (`previewUrl` once it is active; `build`, its build state, once known)', schema: sessionViewSchema } },
    errors: { 400: '`id`: not a uuid', 404: notFound },
  })
  get(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    return this.sessions.get(user, parseOr400(sessionIdParam, id, 'id'));
  }

  /** Server-Sent Events while the session lives: progress, `ready` with the URL (or `failed` with the reason), then `diagnostics` as the build changes, until it ends. */
  @Get(':id/events')
  @ApiEndpoint({
    summary: "The session's events (Server-Sent Events)",
    description:
      '`queued`, `progress` (each step `started`/`done`, with `ms`), then `ready { previewUrl, expiresAt, diagnostics }` or `failed { step, reason, retryable }`. ' +
      'After `ready` the stream stays open while the session lives: `diagnostics { state, diagnostics }` each time the build state changes (an edit breaks or fixes the build, the page throws), ' +
      'then `ending` / `ended`; it closes after `failed` or `ended`. A client that waits only for the URL stops reading at `ready`. ' +
      'Stored per session: a late client gets them all, and `Last-Event-ID` resumes after an id. ' +
      'A `: heartbeat` comment every 15 s. When the stored events have expired, one event is rebuilt from the session row.',
    auth: 'user',
    params: idParam,
    headers: [{ name: 'Last-Event-ID', schema: lastEventIdHeader, description: 'Resume after this event id (EventSource sends it when it reconnects)' }],
    ok: {
      200: {
        description: 'A `text/event-stream`: each frame is `id: <stream id>`, `event: <type>`, `data: <SessionEvent as JSON>`',
        content: { 'text/event-stream': { schema: { ...ref(SCHEMAS.sessionEvent), description: 'The `data` of each frame; `event:` is its `type`' } } },
      },
    },
    errors: {
      400: '`id`: not a uuid; `Last-Event-ID`: not a stream id like 1700000000000-0',
      404: notFound,
      429: {
        description: "The user holds as many open event streams as their tier allows (of every session, on every api replica); `limit` names it: QUOTA_FREE_STREAMS / QUOTA_PRO_STREAMS, `max` its value",
        headers: ['Retry-After'],
      },
      503: { description: 'Redis did not answer, so the open streams could not be counted (`dependency: "redis"`)', headers: ['Retry-After'] },
    },
  })
  async streamEvents(@Param('id') id: string, @Req() req: Request, @Res() res: Response, @CurrentUser() user: AuthUser) {
    const sessionId = parseOr400(sessionIdParam, id, 'id');
    const lastEventId = parseOr400(lastEventIdHeader, req.header('last-event-id') ?? undefined, 'Last-Event-ID') ?? '0';
    // The row is written before the first event, so a session without a row (or another user's) is not there.
    await this.sessions.owned(user, sessionId);
    const lease = await this.leases.take(user);
    await this.follow(sessionId, lease, (stream) => stream.pipe(req, res, lastEventId));
  }

  /**
   * Runs one client's stream of a session's events, known to shutdown, woken when the session is announced gone;
   * its lease (one of the user's open streams) is given back when it ends.
   */
  private async follow(sessionId: string, lease: StreamLease, pipe: (stream: SessionEventStream) => Promise<void>): Promise<void> {
    const gone = this.gone.watch(sessionId);
    const stream = new SessionEventStream(
      sessionId,
      { events: this.events, store: this.store, watcher: this.watcher, logger: this.logger, gone: gone.signal },
      { heartbeatMs: Math.min(this.config.SSE_HEARTBEAT_MS, 15_000), retryMs: 2000 },
    );
    this.streams.add(stream);
    // Shutting down: it ends at once (a POST's after its first event); the client resumes elsewhere with Last-Event-ID.
    if (this.shuttingDown) stream.shutdown();
    try {
      await pipe(stream);
    } finally {
      this.streams.delete(stream);
      gone.release();
      lease.release();
    }
  }

  beforeApplicationShutdown(): void {
    this.shuttingDown = true;
    for (const stream of this.streams) stream.shutdown();
  }

  /** Moves `expires_at` later, up to the tier's maximum; 409 beyond it or when the session is not active. */
  @Post(':id/extend')
  @HttpCode(200)
  @ApiEndpoint({
    summary: 'Keep an active session longer',
    description: "Moves `expiresAt` `seconds` later, up to the tier's maximum session length from activation.",
    auth: 'user',
    params: idParam,
    body: { schema: extendSessionBody },
    ok: { 200: { description: 'Extended', schema: extendedSessionSchema } },
    errors: {
      400: '`id`: not a uuid; `seconds` (or an unknown field): not valid',
      404: notFound,
      409: "The session is not active (`status`), has expired, or `seconds` would pass the tier's maximum session length (`field: \"seconds\"`, `maxDurationSeconds`, `maxUntil`)",
    },
  })
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
  @ApiEndpoint({
    summary: 'Stop a session now',
    description: 'Active: it is ended (`ended` on its events). Still provisioning: it is cancelled (`failed`, "cancelled").',
    auth: 'user',
    params: idParam,
    ok: { 202: { description: 'Stopping', schema: stoppedSessionSchema } },
    errors: { 400: '`id`: not a uuid', 404: notFound, 409: 'The session has already ended or failed (`status`)' },
  })
  async stop(@Param('id') id: string, @CurrentUser() user: AuthUser) {
    const sessionId = parseOr400(sessionIdParam, id, 'id');
    const stopped = await this.sessions.stop(user, sessionId);
    this.logger.info('session stop requested', { sessionId, status: stopped.status, stop: stopped.stop });
    return stopped;
  }
}
