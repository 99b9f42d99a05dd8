import { databaseReachable, migrateDatabase } from '@velocity/ops';
import { createLogger } from '@velocity/runtime';
import { loadConfig, loadDotEnv } from '@velocity/contracts';

/** How long the database server may take to answer: in compose it may still be starting. */
const REACHABLE_TIMEOUT_MS = 10_000;

/**
 * The images' migration step, `node dist/apps/api/src/migrate.js` (compose's
 * `migrate` service): creates DATABASE_URL's database when missing, then applies
 * the pending migrations of supabase/migrations, idempotently. Exits non-zero
 * with one line when it cannot.
 */
async function main() {
  loadDotEnv();
  const config = loadConfig();
  const logger = createLogger('migrate', config.LOG_LEVEL);
  await databaseReachable(config.DATABASE_URL, REACHABLE_TIMEOUT_MS);
  await migrateDatabase(config.DATABASE_URL, (line) => logger.info(line));
}

main().catch((err) => {
  process.stderr.write(`migrate: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
