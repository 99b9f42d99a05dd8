import { randomUUID } from 'node:crypto';
import { EventLog, createRedis } from '@velocity/ops';
import { createLogger } from '@velocity/runtime';
import { sleep, type SessionEvent } from '@velocity/contracts';
import { testConfig } from '@velocity/testing';
import { PROGRESS_COALESCE_MS, emit, flushEvents, runPipeline } from './pipeline';
import type { ProvisionContext, ProvisionDeps, Step } from './provision-context';

/** The real event log, counting the batches it is asked to store. */
class CountingEventLog extends EventLog {
  readonly batches: string[][] = [];
  override appendAll(events: readonly SessionEvent[]) {
    this.batches.push(events.map(label));
    return super.appendAll(events);
  }
}

const label = (e: SessionEvent) => (e.type === 'progress' ? `${e.step} ${e.state}` : e.type);

/** How progress events are stored: together when they come fast, at once when a step is slow, always in order. */
describe('pipeline events', () => {
  const config = testConfig();
  const redis = createRedis(config.REDIS_URL);
  const logger = createLogger('pipeline-test', 'silent');
  afterAll(async () => {
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  });

  const contextFor = (events: EventLog, progressCoalesceMs = PROGRESS_COALESCE_MS): ProvisionContext => ({
    deps: { config, events, logger, progressCoalesceMs } as unknown as ProvisionDeps,
    job: { sessionId: randomUUID(), projectId: randomUUID(), tier: 'free', requestedAt: Date.now() },
    attempt: 1,
    logger,
    signal: new AbortController().signal,
  });
  const step = (name: Step['name']): Step => ({ name, timeoutMs: () => 5000, run: async () => undefined });
  /** Polls `check` every 10 ms until it is true; fails after 5 s. */
  const until = async (check: () => Promise<boolean>, what: string) => {
    for (const deadline = Date.now() + 5000; !(await check()); await sleep(10)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    }
  };
  const stored = async (events: EventLog, sessionId: string) => (await events.read(sessionId)).map((s) => label(s.event));

  it('stores the progress of fast steps and ready in one round trip, in order', async () => {
    const events = new CountingEventLog(redis, config.QUEUE_PREFIX, 60);
    // A window no loaded test machine overruns: the steps here take well under it.
    const ctx = contextFor(events, 10_000);
    await runPipeline(ctx, [step('ensure-project'), step('commit-session'), step('activate')]);
    await emit(ctx, { type: 'ready', previewUrl: 'http://127.0.0.1/p/x/', expiresAt: new Date().toISOString() });
    const expected = ['ensure-project started', 'ensure-project done', 'commit-session started', 'commit-session done', 'activate started', 'activate done', 'ready'];
    expect(events.batches).toEqual([expected]);
    expect(await stored(events, ctx.job.sessionId)).toEqual(expected);
  });

  it("stores a slow step's started while it runs, and keeps the order across batches", async () => {
    const events = new CountingEventLog(redis, config.QUEUE_PREFIX, 60);
    const ctx = contextFor(events);
    // A step that runs until the test lets it finish.
    let finishSlowStep!: () => void;
    const slowStep: Step = { name: 'create-machine', timeoutMs: () => 5000, run: () => new Promise<void>((resolve) => (finishSlowStep = resolve)) };
    const running = runPipeline(ctx, [step('ensure-project'), slowStep]);
    // While the slow step runs, its `started` is stored (within the coalescing window).
    await until(async () => (await stored(events, ctx.job.sessionId)).length === 3, 'the first batch stored');
    expect(await stored(events, ctx.job.sessionId)).toEqual(['ensure-project started', 'ensure-project done', 'create-machine started']);
    finishSlowStep();
    await running;
    await emit(ctx, { type: 'failed', step: 'verify-url', reason: 'test', retryable: false });
    expect(events.batches.length).toBe(2);
    expect(await stored(events, ctx.job.sessionId)).toEqual([
      'ensure-project started',
      'ensure-project done',
      'create-machine started',
      'create-machine done',
      'failed',
    ]);
  });

  it('flushEvents stores what is held at once (the end of an attempt leaves nothing behind)', async () => {
    const events = new CountingEventLog(redis, config.QUEUE_PREFIX, 60);
    const ctx = contextFor(events);
    await emit(ctx, { type: 'progress', step: 'ensure-project', state: 'started', attempt: 1 });
    expect(await stored(events, ctx.job.sessionId)).toEqual([]);
    await flushEvents(ctx);
    expect(await stored(events, ctx.job.sessionId)).toEqual(['ensure-project started']);
    expect(ctx.flushTimer).toBeUndefined();
  });
});
