import { randomUUID } from 'node:crypto';
import { ConfigError, parseWarmPool, poolClaimSchema, type PooledMachine, dependencyProfileOf } from '@velocity/contracts';
import { createRedis } from '@velocity/ops';
import { WarmPool } from '../src/warm-pool';
import { testQueuePrefix, testRedisUrl } from '@velocity/testing';

describe('parseWarmPool', () => {
  it('reads template[/tier]:min-max pairs', () => {
    expect(parseWarmPool('react:2-4,vue/pro:0-2')).toEqual([
      { templateType: 'react', tier: 'free', min: 2, max: 4 },
      { templateType: 'vue', tier: 'pro', min: 0, max: 2 },
    ]);
    expect(parseWarmPool(undefined)).toEqual([]);
  });

  it.each(['react', 'react:4-2', 'angular:1-2', 'react/gold:1-2', 'react:1-2;vue:1-1'])('refuses %s, naming WARM_POOL', (value) => {
    expect(() => parseWarmPool(value)).toThrow(ConfigError);
    expect(() => parseWarmPool(value)).toThrow(/WARM_POOL/);
  });
});

describe('poolClaimSchema', () => {
  const claim = (files: unknown[]) => ({
    sessionId: randomUUID(),
    projectId: randomUUID(),
    filesUrl: 'http://127.0.0.1:1/v1/machines/x/files',
    machineToken: 't',
    files,
    filesCursor: '1-0',
  });

  it('carries text as { path, content } and bytes as { path, content: base64, encoding: "base64" }', () => {
    const files = [{ path: 'a.js', content: '1' }, { path: 'hero.png', content: 'iVBORw0KGgo=', encoding: 'base64' }];
    expect(poolClaimSchema.parse(claim(files)).files).toEqual(files);
  });

  it('refuses a binary file whose content is not base64, naming it', () => {
    const parsed = poolClaimSchema.safeParse(claim([{ path: 'hero.png', content: '%%%', encoding: 'base64' }]));
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues[0].path).toEqual(['files', 0, 'content']);
  });
});

describe('WarmPool', () => {
  const redis = createRedis(testRedisUrl());
  afterAll(() => redis.disconnect());

  const machine = (templateType = 'react'): Omit<PooledMachine, 'state' | 'since'> => {
    const routeId = randomUUID();
    return { machineId: `local-${routeId}`, url: 'http://127.0.0.1:1', routeId, claimToken: 'x'.repeat(48), templateType, tier: 'free', startedBy: 'test' };
  };

  it('gives each of 10 pooled machines to exactly one of 50 concurrent claims', async () => {
    const pool = new WarmPool(redis, testQueuePrefix());
    const machines = Array.from({ length: 10 }, () => machine());
    for (const m of machines) await pool.ready(m);
    const claims = await Promise.all(Array.from({ length: 50 }, () => pool.claim({ templateType: 'react', tier: 'free' })));
    const won = claims.filter((c): c is PooledMachine => c !== null);
    expect(won).toHaveLength(10);
    expect(new Set(won.map((c) => c.machineId)).size).toBe(10);
    expect(won.map((c) => c.machineId).sort()).toEqual(machines.map((m) => m.machineId).sort());
    expect(await pool.size({ templateType: 'react', tier: 'free' })).toBe(0);
    // A claimed machine is the session's now: the pool no longer answers for it.
    expect(await pool.knows(won[0].machineId)).toBe(false);
    expect(await pool.stats('react')).toEqual({ hits: 10, misses: 40 });
  });

  it('claims only the same template and tier', async () => {
    const pool = new WarmPool(redis, testQueuePrefix());
    await pool.ready(machine('vue'));
    expect(await pool.claim({ templateType: 'react', tier: 'free' })).toBeNull();
    expect(await pool.claim({ templateType: 'vue', tier: 'pro' })).toBeNull();
    expect((await pool.claim({ templateType: 'vue', tier: 'free' }))?.templateType).toBe('vue');
  });

  it('knows starting and ready machines, and forgets removed ones', async () => {
    const pool = new WarmPool(redis, testQueuePrefix());
    const starting = machine();
    const ready = machine();
    await pool.starting(starting);
    await pool.ready(ready);
    expect(await pool.knows(starting.machineId)).toBe(true);
    expect(await pool.knows(ready.machineId)).toBe(true);
    // A machine that has been starting too long is not the pool's any more (its starter died).
    expect(await pool.knows(starting.machineId, Date.now() + 10 * 60_000)).toBe(false);
    await pool.remove(ready);
    expect(await pool.knows(ready.machineId)).toBe(false);
    expect(await pool.size({ templateType: 'react', tier: 'free' })).toBe(0);
    expect((await pool.members()).map((m) => m.machineId)).toEqual([starting.machineId]);
  });

  it('takes a removed ready machine off its list whatever order its fields were written in, so no claim gets it', async () => {
    const pool = new WarmPool(redis, testQueuePrefix());
    const { machineId, url, ...rest } = machine();
    // The order the refill writes them in (route id first), not the schema's.
    const written = { ...rest, machineId, url };
    await pool.ready(written);
    await pool.remove(written);
    expect(await pool.size({ templateType: 'react', tier: 'free' })).toBe(0);
    expect(await pool.claim({ templateType: 'react', tier: 'free' })).toBeNull();
  });

  describe('dependency profiles', () => {
    const profile = (name: string) =>
      dependencyProfileOf({
        templateType: 'react',
        tier: 'free',
        dependencies: { key: 'a'.repeat(32), nodeModulesDir: '/deps/node_modules' },
        files: [{ path: 'vite.config.ts', content: `export default { /* ${name} */ }` }],
      })!;

    it("keeps a profile's machines apart from the template's and from other profiles'", async () => {
      const pool = new WarmPool(redis, testQueuePrefix());
      const [mine, other] = [profile('mine'), profile('other')];
      await pool.ready({ ...machine(), profile: mine.key });
      expect(await pool.claim({ templateType: 'react', tier: 'free' })).toBeNull();
      expect(await pool.claim({ templateType: 'react', tier: 'free', profile: other.key })).toBeNull();
      expect((await pool.claim({ templateType: 'react', tier: 'free', profile: mine.key }))?.profile).toBe(mine.key);
      expect(await pool.size({ templateType: 'react', tier: 'free', profile: mine.key })).toBe(0);
    });

    it('lists the most recently used profiles first, at most `limit`, and forgets idle ones', async () => {
      const pool = new WarmPool(redis, testQueuePrefix());
      const [a, b, c] = [profile('a'), profile('b'), profile('c')];
      const now = Date.now();
      await pool.profileUsed(a, now - 60_000);
      await pool.profileUsed(b, now - 1_000);
      await pool.profileUsed(c, now - 2_000);
      expect((await pool.recentProfiles(2, 3_600_000, now)).map((p) => p.key)).toEqual([b.key, c.key]);
      // Used again: first now.
      await pool.profileUsed(a, now);
      expect((await pool.recentProfiles(1, 3_600_000, now)).map((p) => p.key)).toEqual([a.key]);
      // Idle for longer than 1.5 s: b and c are forgotten for good.
      expect((await pool.recentProfiles(10, 1_500, now + 1_000)).map((p) => p.key)).toEqual([a.key]);
      expect((await pool.recentProfiles(10, 3_600_000, now)).map((p) => p.key)).toEqual([a.key]);
      const [stored] = await pool.recentProfiles(1, 3_600_000, now);
      expect(stored).toEqual(a);
      await pool.forgetProfiles([a.key]);
      expect(await pool.recentProfiles(10, 3_600_000, now)).toEqual([]);
    });
  });
});
