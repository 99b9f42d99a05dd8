import { InjectQueue } from '@nestjs/bullmq';
import { ConflictException, ForbiddenException, Inject, Injectable, NotFoundException } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import { QueueName, jobs, resourceLimitsOf, PROVISIONING_STATUSES, TIER_LIMITS, expiryJobId, type Config, type Tier } from '@velocity/contracts';
import { EventLog, WithdrawnRequests, enqueue, outageOf } from '@velocity/ops';
import { type Logger } from '@velocity/runtime';
import { projectById, type PageCursor, type ProjectStore, type SessionRecords, type SessionQueries } from '@velocity/session-store';
import { CONFIG, EVENT_LOG, LOGGER, SESSION_STORE } from '../tokens';
import { currentRequestId } from '../common/request-context';
import { sessionView } from './session.view';
import { pageView } from '../common/listing';
import { canReadProject, canSeeSession, tierAllows, type AuthUser } from '../auth/auth-user';
import { SessionQuotas } from './session-quotas';
import { SessionBuildStates } from './session-build-state';

/** Session use cases of the api: it asks for sessions and reads them; it never provisions. */
@Injectable()
export class SessionsService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: ProjectStore & SessionRecords & SessionQueries,
    @Inject(EVENT_LOG) private readonly events: EventLog,
    @InjectQueue(QueueName.Sessions) private readonly queue: Queue,
    @Inject(LOGGER) private readonly logger: Logger,
    private readonly withdrawn: WithdrawnRequests,
  ) {}

  /**
   * Checks the project, records the request durably (row `queued`), stores the
   * `queued` event and enqueues the job (job id = session id). A job lost with
   * Redis is enqueued again from the row by cleanup's sweep.
   *
   * A request answered with an error does not become a session later: when
   * Redis fails after the row is written, the row is failed before the answer
   * (a job that reaches Redis late finds it failed); when the database stops
   * answering during the insert (it may have committed), the request is marked
   * withdrawn, and the sweep fails such a row instead of enqueuing it.
   */
  async create(user: AuthUser, projectId: string, tier: Tier) {
    if (!tierAllows(user.tier, tier)) {
      throw new ForbiddenException({
        statusCode: 403, error: 'Forbidden', field: 'tier',
        message: `tier: a ${tier} session needs the ${tier} tier; this account's tier is ${user.tier}`,
      });
    }
    const project = await projectById(this.store, projectId);
    // Another user's project is answered as one that does not exist.
    if (!project || !canReadProject(user, project)) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Project ${projectId} does not exist`, field: 'projectId' });
    }
    await this.quotas.takeRequest(user);
    const sessionId = randomUUID();
    const requestedAt = Date.now();
    // The row is inserted only under the user's live-session limit, atomically (one SQL function).
    const inserted = await this.store
      .createSessionWithinQuota({ id: sessionId, projectId, ownerId: user.id, tier, resourceLimits: resourceLimitsOf(tier) }, this.quotas.maxLive(user))
      .catch((err: unknown) => this.withdrawUnsureInsert(sessionId, err));
    if (inserted.outcome === 'over-quota') throw this.quotas.overQuota(user, inserted.live, inserted.limit, inserted.nextExpiresAt);
    const queued = { type: 'queued' as const, sessionId, at: requestedAt };
    let queuedId: string;
    try {
      queuedId = await this.events.append(queued);
      // The request id goes with the job: the provisioner logs it on every line of this session's provisioning.
      await enqueue(this.queue, jobs.provisionSession({ sessionId, projectId, tier, requestedAt, requestId: currentRequestId() }, this.config));
    } catch (err) {
      await this.failUnqueued(sessionId, err);
      throw err;
    }
    const view = { sessionId, status: 'queued' as const, eventsUrl: `/v1/sessions/${sessionId}/events`, sessionUrl: `/v1/sessions/${sessionId}` };
    // The first event as stored: a stream that answers this request starts with it, without reading it back.
    return { view, queued: { id: queuedId, event: queued } };
  }

  /** The insert's outcome is unknown when the database stopped answering: mark the request withdrawn, then fail it. */
  private async withdrawUnsureInsert(sessionId: string, err: unknown): Promise<never> {
    if (outageOf(err)?.dependency === 'database') {
      await this.withdrawn.mark(sessionId).catch((markErr: unknown) =>
        this.logger.error('session request may be recorded and could not be marked withdrawn', { sessionId, err: markErr as Error }),
      );
    }
    throw err;
  }

  /** The row is written but the job could not be queued: the row fails now, so the request ends where it was answered. */
  private async failUnqueued(sessionId: string, err: unknown): Promise<void> {
    const reason = `not queued: ${outageOf(err) ? 'Redis did not answer' : 'the job could not be added'}`;
    const failed = await this.store.transition(sessionId, 'error', { errorMessage: reason, ended: true }).catch((failErr: unknown) => {
      // Both stores failed at once: the sweep will enqueue the row; say so loudly.
      this.logger.error('session request recorded, not queued, and could not be failed', { sessionId, err: failErr as Error });
      return null;
    });
    if (failed) this.logger.warn('session request failed before it was queued', { sessionId, reason, err: err as Error });
  }

  /** The user's sessions (with auth off, every one), newest first; `live`: not ended, not failed. */
  async list(user: AuthUser, query: { status: 'live' | 'all'; limit: number; cursor?: PageCursor }) {
    const page = await this.store.listSessions({ ownerId: user.local ? null : user.id, liveOnly: query.status === 'live', limit: query.limit, before: query.cursor });
    return pageView('sessions', page, (session) => sessionView(session));
  }

  async get(user: AuthUser, sessionId: string) {
    const session = await this.owned(user, sessionId);
    return sessionView(session, await this.builds.current(sessionId));
  }

  /** The session when this user may see it; 404 alike for one that does not exist and another user's. */
  async owned(user: AuthUser, sessionId: string) {
    const session = await this.store.getSession(sessionId);
    if (session && canSeeSession(user, session)) return session;
    throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Session ${sessionId} does not exist`, sessionId });
  }

  // --- extend and stop ---

  /** The cleanup queue, for expiry jobs. */
  @InjectQueue(QueueName.Cleanup) private readonly cleanupQueue!: Queue;

  /** Per-user limits, injected as a property too. */
  @Inject(SessionQuotas) private readonly quotas!: SessionQuotas;

  /** Build states, read from the session's events. */
  @Inject(SessionBuildStates) private readonly builds!: SessionBuildStates;

  /**
   * Moves an active session's `expires_at` `seconds` later, up to its tier's
   * maxDurationSeconds from activation (the database refuses beyond it, atomically),
   * and moves its delayed expiry job to the new time.
   */
  async extend(user: AuthUser, sessionId: string, seconds: number) {
    const session = await this.owned(user, sessionId);
    const { maxDurationSeconds } = TIER_LIMITS[session.tier];
    const result = await this.store.extendSession(sessionId, seconds, maxDurationSeconds);
    switch (result.outcome) {
      case 'not-found':
        throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Session ${sessionId} does not exist`, sessionId });
      case 'not-active':
        throw new ConflictException({
          statusCode: 409, error: 'Conflict', sessionId, status: result.session.status,
          message: `Session ${sessionId} is ${result.session.status}: only an active session can be extended`,
        });
      case 'expired':
        throw new ConflictException({
          statusCode: 409, error: 'Conflict', sessionId, status: result.session.status,
          message: `Session ${sessionId} has expired and is being ended: it can no longer be extended`,
        });
      case 'beyond-max': {
        const leftSeconds = Math.max(0, Math.floor((Date.parse(result.maxUntil) - Date.parse(result.session.expiresAt!)) / 1000));
        throw new ConflictException({
          statusCode: 409, error: 'Conflict', sessionId, field: 'seconds',
          limit: 'maxDurationSeconds', maxDurationSeconds, maxUntil: result.maxUntil, expiresAt: result.session.expiresAt,
          message:
            `Extending by ${seconds} s would pass the ${session.tier} tier's maximum session length of ${maxDurationSeconds} s ` +
            `(maxDurationSeconds, until ${result.maxUntil}); at most ${leftSeconds} s more are allowed`,
        });
      }
      case 'extended': {
        const expiresAt = result.session.expiresAt!;
        // The row holds the new time: an expiry job left at the old time finds it and waits for it.
        await this.bestEffort(sessionId, 'move the expiry job', () => this.moveExpiryJob(sessionId, expiresAt));
        return { sessionId, status: result.session.status, expiresAt, maxUntil: result.maxUntil };
      }
    }
  }

  /**
   * Stops a session now. Active: cleanup ends it (an `expire-session` job with
   * reason `stopped`, no delay). Still provisioning: the row becomes `error`
   * ("cancelled"), its waiting job is removed, `failed` is stored, and cleanup
   * destroys whatever machine was made. 409 when it has already ended or failed.
   */
  async stop(user: AuthUser, sessionId: string) {
    let session = await this.owned(user, sessionId);

    if (PROVISIONING_STATUSES.includes(session.status)) {
      const cancelled = await this.store.transition(sessionId, 'error', { errorMessage: 'cancelled: stopped before it was ready', ended: true });
      if (cancelled) {
        // The row is the cancellation: the rest only makes it quicker. Without Redis, the provisioner's next step
        // finds the row failed, streams end from the row, and cleanup's sweep destroys a machine left behind.
        // A job being worked on is locked and not removed; its next step finds the row failed.
        await this.queue.remove(sessionId).catch(() => 0);
        await this.bestEffort(sessionId, 'store the failed event', () =>
          this.events.append({ type: 'failed', sessionId, at: Date.now(), reason: 'cancelled: stopped before it was ready', retryable: false }),
        );
        await this.bestEffort(sessionId, 'queue the machine clean-up', () => this.addStopJob(sessionId));
        return { sessionId, status: cancelled.status, stop: 'cancelled' as const };
      }
      // It moved on meanwhile (most likely to active): read it again.
      session = (await this.store.getSession(sessionId))!;
    }

    if (session.status === 'active' || session.status === 'ending') {
      if (session.status === 'active') {
        await this.cleanupQueue.remove(expiryJobId(sessionId)).catch(() => 0);
        await this.addStopJob(sessionId);
      }
      return { sessionId, status: session.status, stop: 'ending' as const };
    }
    throw new ConflictException({
      statusCode: 409, error: 'Conflict', sessionId, status: session.status,
      message: `Session ${sessionId} is already ${session.status}`,
    });
  }

  /** A follow-up of a change already committed in the row: its failure is logged, and the answer stands. */
  private async bestEffort(sessionId: string, what: string, run: () => Promise<unknown>): Promise<void> {
    try {
      await run();
    } catch (err) {
      this.logger.warn(`could not ${what}; the session's row already says what happened`, { sessionId, err: err as Error });
    }
  }

  /** An `expire-session` job with reason `stopped` and no delay; its own id, so a pending expiry job cannot swallow it. */
  private async addStopJob(sessionId: string) {
    await enqueue(this.cleanupQueue, jobs.stopSession(sessionId));
  }

  /**
   * The delayed expiry job follows `expires_at`: its delay is changed when it is
   * waiting, otherwise it is removed and added again under the same id. If it is
   * running right now neither works; it then sees the later `expires_at` and
   * delays itself (apps/cleanup expire-session), and the sweep is the backstop.
   */
  private async moveExpiryJob(sessionId: string, expiresAt: string) {
    const job = await this.cleanupQueue.getJob(expiryJobId(sessionId));
    if (job && (await job.getState()) === 'delayed') {
      try {
        await job.changeDelay(Math.max(0, Date.parse(expiresAt) - Date.now()));
        return;
      } catch {
        // It left the delayed state meanwhile: fall through to remove and add.
      }
    }
    if (job) await job.remove().catch(() => undefined);
    await enqueue(this.cleanupQueue, jobs.expireSession(sessionId, expiresAt));
  }
}
