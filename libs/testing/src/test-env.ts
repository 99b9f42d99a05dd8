import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '@velocity/contracts';
import { applyMigrations, databaseName, dropDatabase, ensureDatabase, withDatabase } from '@velocity/ops';

/**
 * Test helpers over the per-run environment that global-setup.js creates: a
 * fresh migrated database and a Redis key prefix, both removed in teardown.
 */
function required(name: 'VP_TEST_DATABASE_URL' | 'VP_TEST_QUEUE_PREFIX'): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run tests through Jest, whose globalSetup (libs/testing/src/global-setup.js) sets it`);
  }
  return value;
}

/** URL of this run's migrated test database. */
export const testDatabaseUrl = (): string => required('VP_TEST_DATABASE_URL');

/** A queue/key prefix under this run's prefix (so teardown deletes its keys); unique per call unless `suffix` is given. */
export const testQueuePrefix = (suffix?: string): string =>
  `${required('VP_TEST_QUEUE_PREFIX')}-${suffix ?? randomBytes(4).toString('hex')}`;

/** Redis URL of the test run. */
export const testRedisUrl = (): string => process.env.VP_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** A Config for tests: the test database and Redis, a fresh queue prefix, the run's machines folder, then `overrides`. */
export function testConfig(overrides: Record<string, string | number | boolean | undefined> = {}): Config {
  const env: Record<string, string | undefined> = {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.VP_TEST_LOG_LEVEL || 'error',
    DATABASE_URL: testDatabaseUrl(),
    REDIS_URL: testRedisUrl(),
    QUEUE_PREFIX: testQueuePrefix(),
    LOCAL_MACHINES_DIR: process.env.VP_TEST_MACHINES_DIR,
  };
  for (const [key, value] of Object.entries(overrides)) env[key] = value === undefined ? undefined : String(value);
  return loadConfig(env);
}

/**
 * A migrated database of its own, beside this run's, for a test that runs a
 * whole system: its cleanup sweeps act on every row they see, so they must see
 * only their own. `drop()` removes it.
 */
export async function scratchDatabase(label: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const base = testDatabaseUrl();
  const url = withDatabase(base, `${databaseName(base)}_${label}_${randomBytes(3).toString('hex')}`);
  await ensureDatabase(url);
  await applyMigrations(url);
  return { url, drop: () => dropDatabase(url) };
}
