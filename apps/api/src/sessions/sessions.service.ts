import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, NotFoundException } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import {
  DEFAULT_TEMPLATE,
  DEMO_PROJECT_ID,
  EventLog,
  JobName,
  QueueName,
  parseJob,
  resourceLimitsOf,
  type Config,
  type SessionStore,
  type Tier,
} from '@velocity/shared';
import { CONFIG, EVENT_LOG, SESSION_STORE } from '../tokens';
import { sessionView } from './session.view';

/** Session use cases of the api: it asks for sessions and reads them; it never provisions. */
@Injectable()
export class SessionsService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
    @Inject(EVENT_LOG) private readonly events: EventLog,
    @InjectQueue(QueueName.Sessions) private readonly queue: Queue,
  ) {}

  /**
   * Checks the project, records the request durably (row `queued`), stores the
   * `queued` event and enqueues the job (job id = session id). A job lost with
   * Redis is enqueued again from the row by cleanup's sweep.
   */
  async create(projectId: string, tier: Tier) {
    const project =
      projectId === DEMO_PROJECT_ID
        ? await this.store.ensureProject({ id: projectId, name: 'Demo project', templateType: DEFAULT_TEMPLATE })
        : await this.store.getProject(projectId);
    if (!project) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Project ${projectId} does not exist`, field: 'projectId' });
    }
    const sessionId = randomUUID();
    const requestedAt = Date.now();
    await this.store.createSession({ id: sessionId, projectId, tier, resourceLimits: resourceLimitsOf(tier), status: 'queued' });
    await this.events.append({ type: 'queued', sessionId, at: requestedAt });
    await this.queue.add(
      JobName.ProvisionSession,
      parseJob(JobName.ProvisionSession, { sessionId, projectId, tier, requestedAt }),
      {
        jobId: sessionId,
        attempts: this.config.PROVISION_ATTEMPTS,
        backoff: { type: 'exponential', delay: this.config.PROVISION_BACKOFF_MS },
        removeOnComplete: { age: 3600 },
        removeOnFail: { age: 24 * 3600 },
      },
    );
    return { sessionId, status: 'queued' as const, eventsUrl: `/v1/sessions/${sessionId}/events`, sessionUrl: `/v1/sessions/${sessionId}` };
  }

  async get(sessionId: string) {
    const session = await this.store.getSession(sessionId);
    if (session) return sessionView(session);
    throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Session ${sessionId} does not exist`, sessionId });
  }

  /** Whether this session was ever asked for: its event stream or its row. */
  async exists(sessionId: string): Promise<boolean> {
    return (await this.events.exists(sessionId)) || (await this.store.getSession(sessionId)) !== null;
  }
}
