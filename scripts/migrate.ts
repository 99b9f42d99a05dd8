import { applyMigrations, assertServicesReachable, ensureDatabase } from '@velocity/ops';
import { loadConfig } from '@velocity/contracts';

/** `npm run migrate`: creates the database when missing and applies pending migrations, idempotently. */
export async function migrate(databaseUrl: string, log: (line: string) => void = console.log): Promise<void> {
  if (await ensureDatabase(databaseUrl)) log(`created database ${new URL(databaseUrl).pathname.slice(1)}`);
  const applied = await applyMigrations(databaseUrl);
  log(applied.length > 0 ? `applied migrations: ${applied.join(', ')}` : 'migrations: up to date');
}

if (require.main === module) {
  (async () => {
    const config = loadConfig();
    await assertServicesReachable(config).catch(async (err) => {
      // The database itself may not exist yet; only the server has to answer.
      if (!String(err.message).startsWith('PostgreSQL')) throw err;
    });
    await migrate(config.DATABASE_URL);
  })().catch((err) => {
    console.error(`migrate: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
