import { DEMO_PROJECT_ID, assertServicesReachable, loadConfig, publicUrl } from '@velocity/shared';
import { migrate } from './migrate';
import { APPS, startApp, stopProcess, waitForHttp } from './services';

/**
 * `npm start`: checks Redis and Postgres, applies migrations, then runs the
 * api, the provisioner and cleanup until Ctrl-C. One app dying stops them all.
 */
async function main() {
  const config = loadConfig();
  await assertServicesReachable({ ...config, DATABASE_URL: maintenanceUrl(config.DATABASE_URL) });
  await migrate(config.DATABASE_URL, (line) => console.log(`start: ${line}`));

  const children = APPS.map((app) => ({ app, child: startApp(app, process.env) }));
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    await Promise.all(children.map(({ child }) => stopProcess(child)));
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
      `start: start a preview of the demo project with: npm run preview -- ${DEMO_PROJECT_ID}`,
      `start: or: curl -s -X POST ${base}/v1/sessions -H 'content-type: application/json' -d '{"projectId":"${DEMO_PROJECT_ID}"}'`,
    ].join('\n'),
  );
}

/** The server's maintenance database: the app's own may not exist before the first migration. */
function maintenanceUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.pathname = '/postgres';
  return url.toString();
}

main().catch((err) => {
  console.error(`start: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
