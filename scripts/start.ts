import { DEMO_PROJECT_ID, loadConfig, loadDotEnv, publicUrl, type Config } from '@velocity/contracts';
import { LocalMachineProvider } from '@velocity/machines';
import { START_REDIS_HINT, assertServicesReachable, pingRedis, APPS, startApp, stopProcess, waitForHttp, migrateDatabase } from '@velocity/ops';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres';

/**
 * `npm start`: checks Redis and Postgres, applies migrations, then runs the
 * api, the provisioner and cleanup until Ctrl-C. One app dying stops them all.
 */
/** The embedded Postgres this start runs (DATABASE_URL unset); stopped last, after the apps. */
let embedded: EmbeddedPostgres | null = null;

async function main() {
  const dotEnv = loadDotEnv();
  if (dotEnv) console.log(`start: read ${dotEnv}`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (!env.DATABASE_URL) {
    const settings = loadConfig(env);
    // Redis first: without it nothing works, so say so before starting anything.
    await pingRedis(settings.REDIS_URL, 3000).catch((err) => {
      throw new Error(`Redis does not answer at ${settings.REDIS_URL} (${err.message}). Start it with: ${START_REDIS_HINT}, or set REDIS_URL.`);
    });
    // Ctrl-C while Postgres starts or migrations run: stop it before leaving.
    const early = () => void (embedded?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
    process.once('SIGINT', early);
    process.once('SIGTERM', early);
    embedded = await startEmbeddedPostgres({
      dir: settings.EMBEDDED_POSTGRES_DIR,
      port: settings.EMBEDDED_POSTGRES_PORT,
      database: 'velocity_preview',
      log: (line) => console.log(`start: ${line}`),
    });
    process.removeListener('SIGINT', early);
    process.removeListener('SIGTERM', early);
    env.DATABASE_URL = embedded.url;
    console.log(`start: no DATABASE_URL: using an embedded Postgres on 127.0.0.1:${embedded.port}, data in ${embedded.dir}`);
  }
  const config = loadConfig(env);
  await assertServicesReachable({ ...config, DATABASE_URL: maintenanceUrl(config.DATABASE_URL) });
  await migrateDatabase(config.DATABASE_URL, (line) => console.log(`start: ${line}`));

  const children = APPS.map((app) => ({ app, child: startApp(app, env) }));
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await Promise.all(children.map(({ child }) => stopProcess(child)));
    await stopLocalMachines(config);
    await embedded?.stop();
    process.exit(code);
  };
  for (const { app, child } of children) {
    child.once('exit', (code, signal) => {
      if (stopping) return;
      console.error(`start: ${app} exited (${signal ?? `code ${code}`}); stopping the others`);
      void stopAll(1);
    });
  }
  process.once('SIGINT', () => void stopAll(0));
  process.once('SIGTERM', () => void stopAll(0));

  const base = publicUrl(config);
  await waitForHttp(`${base}/health`, 30_000, () => stopping);
  console.log(
    [
      `start: Velocity Preview is up at ${base}`,
      `start: start a preview of the demo project with: npx velocity-preview start ${DEMO_PROJECT_ID} (velocity-preview help: the other commands)`,
      `start: or: curl -s -X POST ${base}/v1/sessions -H 'content-type: application/json' -d '{"projectId":"${DEMO_PROJECT_ID}"}'`,
    ].join('\n'),
  );
}

/**
 * Local machines are processes of this computer: when the system stops, its
 * previews stop with it (their sessions are ended as `machine-gone` by the next
 * start's cleanup). Machines on Fly are left to cleanup.
 */
async function stopLocalMachines(config: Config): Promise<void> {
  if (config.MACHINE_PROVIDER !== 'local') return;
  const provider = new LocalMachineProvider({ dir: config.LOCAL_MACHINES_DIR });
  const machines = await provider.list().catch(() => []);
  await Promise.all(machines.map((machine) => provider.destroy(machine.id).catch(() => undefined)));
  if (machines.length > 0) console.log(`start: stopped ${machines.length} preview machine(s)`);
}

/** The server's maintenance database: the app's own may not exist before the first migration. */
function maintenanceUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.pathname = '/postgres';
  return url.toString();
}

main().catch(async (err) => {
  console.error(`start: ${err instanceof Error ? err.message : String(err)}`);
  await embedded?.stop();
  process.exit(1);
});
