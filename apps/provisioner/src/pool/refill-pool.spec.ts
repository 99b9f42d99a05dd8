import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalMachineProvider, WarmPool } from '@velocity/machines';
import { createLogger } from '@velocity/runtime';
import { createRedis } from '@velocity/ops';
import { testConfig } from '@velocity/testing';
import { RefillPool } from './refill-pool';

/** The real local provider, noting in `seen` when it is asked for its machines. */
class ListingProvider extends LocalMachineProvider {
  constructor(options: ConstructorParameters<typeof LocalMachineProvider>[0], private readonly seen: string[]) {
    super(options);
  }
  override list() {
    this.seen.push('list');
    return super.list();
  }
}

describe('RefillPool', () => {
  const config = testConfig();
  const redis = createRedis(config.REDIS_URL);
  const dir = mkdtempSync(join(tmpdir(), 'vp-refill-'));
  afterAll(async () => {
    const keys = await redis.keys(`${config.QUEUE_PREFIX}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  it('while sessions are being provisioned, waits before it even counts the machines', async () => {
    // What the refill saw, in order: three answers "sessions are being provisioned", then quiet.
    const seen: string[] = [];
    const provider = new ListingProvider({ dir }, seen);
    let busyAnswers = 3;
    const refill = new RefillPool({
      config,
      provider,
      pool: new WarmPool(redis, config.QUEUE_PREFIX),
      // A pool already at its size: nothing to start, only the counting.
      targets: [{ templateType: 'react', tier: 'free', min: 0, max: 0 }],
      redis,
      logger: createLogger('refill-test', 'silent'),
      workerName: 'refill-test',
      provisioning: async () => {
        const busy = busyAnswers-- > 0;
        seen.push(busy ? 'busy' : 'quiet');
        return busy;
      },
    });
    expect(await refill.execute()).toEqual({ started: 0 });
    expect(seen).toEqual(['busy', 'busy', 'busy', 'quiet', 'list']);
  });
});
