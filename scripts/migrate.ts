import { assertServicesReachable, migrateDatabase } from '@velocity/ops';
import { loadConfig } from '@velocity/contracts';

/** `npm run migrate`: creates the database when missing and applies pending migrations, idempotently. */
(async () => {
  const config = loadConfig();
  await assertServicesReachable(config).catch(async (err) => {
    // The database itself may not exist yet; only the server has to answer.
    if (!String(err.message).startsWith('PostgreSQL')) throw err;
  });
  await migrateDatabase(config.DATABASE_URL, console.log);
})().catch((err) => {
  console.error(`migrate: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
