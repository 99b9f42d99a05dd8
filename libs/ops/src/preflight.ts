import type { Config } from '@velocity/contracts';
import { databaseReachable } from './migrate';
import { pingRedis } from './redis';

export const START_REDIS_HINT = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no';
export const START_POSTGRES_HINT = 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start';

const redacted = (url: string) => url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');

/** Throws one clear line naming the first service that does not answer, and how to start it. */
export async function assertServicesReachable(config: Config, timeoutMs = 3000): Promise<void> {
  await pingRedis(config.REDIS_URL, timeoutMs).catch((err) => {
    throw new Error(`Redis does not answer at ${redacted(config.REDIS_URL)} (${err.message}). Start it with: ${START_REDIS_HINT}, or set REDIS_URL.`);
  });
  await databaseReachable(config.DATABASE_URL, timeoutMs).catch((err) => {
    throw new Error(`PostgreSQL does not answer at ${redacted(config.DATABASE_URL)} (${err.message}). Start it with: ${START_POSTGRES_HINT}, or set DATABASE_URL.`);
  });
}
