import { randomUUID } from 'node:crypto';
import { EventLog, createRedis } from '@velocity/ops';
import { sleep } from '@velocity/contracts';
import { testConfig } from '@velocity/testing';
import { GoneSessions } from './gone-sessions';

/** GoneSessions over the real Redis channel the event log announces on. */
describe('GoneSessions', () => {
  const config = testConfig();
  const redis = createRedis(config.REDIS_URL);
  const events = new EventLog(redis, config.QUEUE_PREFIX, 60);
  const gone = new GoneSessions(events, config);
  /** Every session announced to `gone`, in order. */
  const announced: string[] = [];
  const markers = new Map<string, () => void>();
  gone.onEvery((id) => {
    announced.push(id);
    markers.get(id)?.();
  });

  afterAll(async () => {
    gone.onModuleDestroy();
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  /** Until the subscription is in place: an announcement of a session nobody watches comes back. */
  beforeAll(async () => {
    const probe = randomUUID();
    for (let i = 0; i < 100 && !announced.includes(probe); i++) {
      await redis.publish(events.goneChannel, probe);
      await sleep(20);
    }
    expect(announced).toContain(probe);
  });

  /**
   * Resolves once every announcement published before it has reached `gone`: a marker sent on
   * the same connection after them arrives after them (Redis delivers one publisher's messages in order).
   */
  async function earlierAnnouncementsDelivered(): Promise<void> {
    const marker = randomUUID();
    const arrived = new Promise<void>((resolve) => markers.set(marker, resolve));
    await redis.publish(events.goneChannel, marker);
    await arrived;
    markers.delete(marker);
  }

  it('aborts the signal of a watched session when it ends, and not the others', async () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const watchA = gone.watch(a);
    const watchB = gone.watch(b);
    await events.append({ type: 'ending', sessionId: a, at: Date.now(), reason: 'stopped' });
    await earlierAnnouncementsDelivered();
    expect(watchA.signal.aborted).toBe(true);
    expect(watchB.signal.aborted).toBe(false);
    watchA.release();
    watchB.release();
  });

  it('is not announced for progress, and forgets a released watch', async () => {
    const id = randomUUID();
    const before = gone.watched;
    const watch = gone.watch(id);
    expect(gone.watched).toBe(before + 1);
    await events.append({ type: 'progress', sessionId: id, at: Date.now(), step: 'verify-url', state: 'started', attempt: 1 });
    await earlierAnnouncementsDelivered();
    expect(announced).not.toContain(id);
    expect(watch.signal.aborted).toBe(false);
    watch.release();
    expect(gone.watched).toBe(before);
  });
});
