import {
  BeforeApplicationShutdown,
  Controller,
  Get,
  Headers,
  Inject,
  Param,
  Req,
  Res,
  ServiceUnavailableException,
} from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { StreamWatcher } from '@velocity/ops';
import { FileChangeLog, type Config, type MachineClaims } from '@velocity/contracts';
import { type Logger } from '@velocity/runtime';
import { type SessionRecords } from '@velocity/session-store';
import { GoneSessions } from '../common/gone-sessions';
import { parseOr400 } from '../common/validation';
import { LIVE_SESSION_ERRORS, MachineAccess } from './machine-access';
import { CONFIG, LOGGER, STREAM_WATCHER, SESSION_STORE } from '../tokens';
import { FileChangeStream } from './file-changes.stream';
import { ApiEndpoint, ref, SCHEMAS } from '../openapi/api-endpoint';
import { machineSessionIdParam } from './machine-files.controller';

// At most 19 digits a part: every such number fits the 64 bits of a Redis stream id.
export const fileChangesLastEventIdHeader = z.string().regex(/^\d{1,19}-\d{1,19}$/, 'must be a stream id like 1700000000000-0').optional();

/**
 * `GET /v1/machines/:sessionId/file-changes`: Server-Sent Events of the session's
 * project's file changes, for its preview machine (see FileChangeStream). The
 * same machine token as `GET /v1/machines/:sessionId/files` opens it; a session
 * that has ended answers 410, and one that ends while connected gets `ended`.
 */
@ApiTags('machines')
@Controller('v1/machines')
export class FileChangesController implements BeforeApplicationShutdown {
  /** Open streams: ended on shutdown, since the HTTP server waits for open connections before it closes. */
  private readonly streams = new Set<FileChangeStream>();
  private shuttingDown = false;

  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionRecords,
    private readonly access: MachineAccess,
    private readonly gone: GoneSessions,
    @Inject(STREAM_WATCHER) private readonly watcher: StreamWatcher,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly changes: FileChangeLog,
  ) {}

  @Get(':sessionId/file-changes')
  @ApiEndpoint({
    summary: "The project's file changes, live (Server-Sent Events), for the session's machine",
    description:
      'Without `Last-Event-ID`: `resync` first, then every change. With it: the changes after it (`resync` instead when some were trimmed away). ' +
      '`ended` when the session is over, then the stream closes. A `: heartbeat` comment every 15 s.',
    auth: 'machine',
    params: { sessionId: { schema: machineSessionIdParam, description: 'The session the machine serves (its token is for it)' } },
    headers: [{ name: 'Last-Event-ID', schema: fileChangesLastEventIdHeader, description: 'Resume after this change id' }],
    ok: {
      200: {
        description: 'A `text/event-stream`: frames `event: resync | put | delete | batch | ended`, `data: <JSON>`; `put` / `delete` / `batch` (notices: paths, ETags, sizes; no content) carry their stream id as `id:`',
        content: { 'text/event-stream': { schema: { ...ref(SCHEMAS.fileChangesEvent), description: 'The `data` of each frame' } } },
      },
    },
    errors: {
      400: '`sessionId`: not a uuid; `Last-Event-ID`: not a stream id like 1700000000000-0',
      ...LIVE_SESSION_ERRORS,
      503: { description: 'The api is shutting down: reconnect (to another replica, or after the restart)', headers: ['Retry-After'] },
    },
  })
  async stream(
    @Param('sessionId') sessionIdRaw: string,
    @Headers('authorization') authorization: string | undefined,
    @Req() req: Request,
    @Res() res: Response,
  ) {
    const sessionId = parseOr400(machineSessionIdParam, sessionIdRaw, 'sessionId');
    if (this.shuttingDown) {
      res.setHeader('retry-after', '1');
      res.setHeader('connection', 'close');
      throw new ServiceUnavailableException({ statusCode: 503, error: 'Service Unavailable', message: 'The api is shutting down; reconnect' });
    }
    const claims = this.access.claims(authorization, sessionId);
    const lastEventId = parseOr400(fileChangesLastEventIdHeader, req.header('last-event-id') ?? undefined, 'Last-Event-ID');

    // Watched before the row is read: the row is updated before the session is announced gone, so an end is seen by one or the other.
    const gone = this.gone.watch(sessionId);
    const stream = await this.openStream(claims, gone.signal).catch((err: unknown) => {
      gone.release();
      throw err;
    });
    this.streams.add(stream);
    try {
      await stream.pipe(req, res, lastEventId);
    } finally {
      this.streams.delete(stream);
      gone.release();
    }
  }

  /** The stream for the token's session, when it is live (MachineAccess: 404, 403 or 410 otherwise). */
  private async openStream(claims: MachineClaims, gone: AbortSignal): Promise<FileChangeStream> {
    const session = await this.access.liveSession(claims);
    return new FileChangeStream(
      { id: session.id, projectId: session.projectId },
      { changes: this.changes, store: this.store, watcher: this.watcher, gone, logger: this.logger.child({ sessionId: session.id }) },
      { heartbeatMs: Math.min(this.config.SSE_HEARTBEAT_MS, 15_000), retryMs: 1000 },
    );
  }

  beforeApplicationShutdown(): void {
    this.shuttingDown = true;
    for (const stream of this.streams) stream.shutdown();
  }
}
