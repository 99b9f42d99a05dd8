// Jest globalTeardown: removes what global-setup.js created in this process (the
// test database, every Redis key under the run's prefix, the machines folder). Idempotent, and a
// no-op when the env came from outside (VP_TEST_DATABASE_URL set by the caller).
const fs = require('node:fs');
const path = require('node:path');

const STATE = Symbol.for('velocity-preview.test-env');

async function deleteRedisKeys(redisUrl, prefix) {
  const Redis = require('ioredis');
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    connectTimeout: 2000,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
  } catch (error) {
    console.warn(`[global-teardown] Redis at ${redisUrl} unreachable, ${prefix}* keys not checked: ${error.message}`);
    redis.disconnect();
    return;
  }
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

module.exports = async function globalTeardown() {
  const state = globalThis[STATE];
  if (!state || state.tornDown) return;
  state.tornDown = true;

  require('@swc-node/register');
  const { dropDatabase } = require(path.join(__dirname, '../../ops/src/migrate.ts'));

  const errors = [];
  if (state.machinesDir) fs.rmSync(state.machinesDir, { recursive: true, force: true });
  if (state.dependenciesDir) fs.rmSync(state.dependenciesDir, { recursive: true, force: true });
  await dropDatabase(state.databaseUrl).catch((error) => errors.push(error));
  await deleteRedisKeys(process.env.VP_TEST_REDIS_URL || 'redis://127.0.0.1:6379', state.queuePrefix).catch((error) =>
    errors.push(error),
  );
  if (errors.length > 0) throw new AggregateError(errors, `Test cleanup failed: ${errors.map((e) => e.message).join('; ')}`);
};
