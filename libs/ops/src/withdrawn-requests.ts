import type Redis from 'ioredis';

/** Longer than a session may stay provisioning, so the sweep sees the mark for as long as it could act on the row. */
const WITHDRAWN_TTL_SECONDS = 60 * 60;

/**
 * Session requests the api answered with an error although their row may have
 * been written: the insert was sent, then the database stopped answering (it
 * may have committed). Cleanup's sweep enqueues a provisioning session whose
 * job is missing; one marked here it fails instead, so a request the client
 * was told failed never becomes a session later.
 */
export class WithdrawnRequests {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  key(sessionId: string): string {
    return `${this.prefix}:withdrawn:${sessionId}`;
  }

  async mark(sessionId: string): Promise<void> {
    await this.redis.set(this.key(sessionId), '1', 'EX', WITHDRAWN_TTL_SECONDS);
  }

  async isMarked(sessionId: string): Promise<boolean> {
    return (await this.redis.exists(this.key(sessionId))) === 1;
  }
}
