// Jest globalSetup: one fresh Postgres database (migrated), one Redis key
// prefix and one machines folder per test run, so runs never share state. Jest passes the env vars set
// here on to every test worker. In a multi-project run this may be called once
// per project: only the first call creates anything.
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const STATE = Symbol.for('velocity-preview.test-env');

module.exports = async function globalSetup() {
  if (process.env.VP_TEST_DATABASE_URL) return;

  // Loads the TypeScript sources of libs/ops.
  require('@swc-node/register');
  const { ensureDatabase, applyMigrations, dropDatabase, withDatabase } = require(path.join(__dirname, '../../ops/src/migrate.ts'));

  const serverUrl = process.env.VP_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
  const databaseUrl = withDatabase(serverUrl, `vp_test_${process.pid}_${crypto.randomBytes(4).toString('hex')}`);
  const queuePrefix = `vp-test-${crypto.randomBytes(4).toString('hex')}`;

  try {
    await ensureDatabase(databaseUrl);
    await applyMigrations(databaseUrl);
  } catch (error) {
    // Jest runs no teardown when setup fails: leave nothing behind.
    await dropDatabase(databaseUrl).catch(() => undefined);
    throw error;
  }

  // LOCAL_MACHINES_DIR of test configs: a test api makes its machine socket there, not in the repo's .velocity.
  const machinesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vp-test-machines-'));
  // Installed dependency sets, shared by every system of the run (a set is installed once per run);
  // readable by the unprivileged user sandboxed machines run as.
  const dependenciesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vp-test-dependencies-'));
  fs.chmodSync(dependenciesDir, 0o755);
  globalThis[STATE] = { databaseUrl, queuePrefix, machinesDir, dependenciesDir, tornDown: false };
  process.env.VP_TEST_DATABASE_URL = databaseUrl;
  process.env.VP_TEST_QUEUE_PREFIX = queuePrefix;
  process.env.VP_TEST_MACHINES_DIR = machinesDir;
  process.env.VP_TEST_DEPENDENCIES_DIR = dependenciesDir;
};
