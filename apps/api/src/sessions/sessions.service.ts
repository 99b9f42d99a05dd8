import { InjectQueue } from '@nestjs/bullmq';
import { Inject, Injectable, NotFoundException } from '@nestjs/common';
import type { Queue } from 'bullmq';
import { randomUUID } from 'node:crypto';
import {
  DEMO_PROJECT_ID,
  EventLog,
  JobName,
  QueueName,
  parseJob,
  type Config,
  type SessionStore,
  type Tier,
} from '@velocity/shared';
import { CONFIG, EVENT_LOG, SESSION_STORE } from '../tokens';
import { queuedView, sessionView } from './session.view';

/** Session use cases of the api: it asks for sessions and reads them; it never provisions. */
@Injectable()
export class SessionsService {
  constructor(
    @Inject(CONFIG) private readonly config: Config,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
    @Inject(EVENT_LOG) private readonly events: EventLog,
    @InjectQueue(QueueName.Sessions) private readonly queue: Queue,
  ) {}

  /** Checks the project, stores `queued`, enqueues the job (job id = session id). */
  async create(projectId: string, tier: Tier) {
    if (projectId !== DEMO_PROJECT_ID && !(await this.store.getProject(projectId))) {
      throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Project ${projectId} does not exist`, field: 'projectId' });
    }
    const sessionId = randomUUID();
    const requestedAt = Date.now();
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

  /** The row when committed; before that, the queued job. */
  async get(sessionId: string) {
    const session = await this.store.getSession(sessionId);
    if (session) return sessionView(session);
    const job = await this.queue.getJob(sessionId);
    if (job) {
      const data = parseJob(JobName.ProvisionSession, job.data);
      return queuedView(sessionId, data.projectId, data.tier, data.requestedAt);
    }
    throw new NotFoundException({ statusCode: 404, error: 'Not Found', message: `Session ${sessionId} does not exist`, sessionId });
  }

  /** Whether anything knows this session: its event stream, its row or its job. */
  async exists(sessionId: string): Promise<boolean> {
    if (await this.events.exists(sessionId)) return true;
    if (await this.store.getSession(sessionId)) return true;
    return (await this.queue.getJob(sessionId)) !== undefined;
  }
}
