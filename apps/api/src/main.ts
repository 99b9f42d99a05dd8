import { assertServicesReachable, createLogger, loadConfig, publicUrl } from '@velocity/shared';
import { createApi } from './bootstrap';
import { requestLogFields } from './common/request-context';

/** The api process: HTTP API, session events and the local preview edge. */
async function main() {
  const config = loadConfig();
  // Each line written while a request is handled carries its request id.
  const logger = createLogger('api', config.LOG_LEVEL, {}, undefined, requestLogFields);
  await assertServicesReachable(config);
  const app = await createApi(config, logger);
  await app.listen(config.API_PORT, config.API_HOST);
  logger.info('api ready', { url: publicUrl(config) });
}

main().catch((err) => {
  process.stderr.write(`api: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
