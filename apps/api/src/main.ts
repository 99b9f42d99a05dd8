import { assertServicesReachable } from '@velocity/ops';
import { createLogger } from '@velocity/runtime';
import { loadConfig, loadDotEnv, machineApiSocketOf, publicUrl } from '@velocity/contracts';
import type { RequestListener } from 'node:http';
import { createApi } from './bootstrap';
import { requestLogFields } from './common/request-context';
import { MachineSocket } from './machines/machine-socket';

/** The api process: HTTP API, session events, the local preview edge, and (local machines) the machine routes on a Unix socket. */
async function main() {
  loadDotEnv();
  const config = loadConfig();
  // Each line written while a request is handled carries its request id (and the session its path names).
  const logger = createLogger('api', config.LOG_LEVEL, { context: requestLogFields });
  await assertServicesReachable(config);
  const app = await createApi(config, logger);
  // Routes first, then the socket for sandboxed local machines, which have no network (closed by Nest's shutdown
  // hooks), then the port: once the api answers there, machines can reach it too.
  await app.init();
  const machineSocket = config.MACHINE_PROVIDER === 'local' ? machineApiSocketOf(config) : undefined;
  if (machineSocket) await app.get(MachineSocket).listen(machineSocket, app.getHttpAdapter().getInstance() as RequestListener);
  await app.listen(config.API_PORT, config.API_HOST);
  logger.info('api ready', { url: publicUrl(config), machineSocket });
}

main().catch((err) => {
  process.stderr.write(`api: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
