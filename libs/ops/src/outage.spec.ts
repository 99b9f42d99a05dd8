import { createServer, type Server, type Socket } from 'node:net';
import Redis from 'ioredis';
import { Pool } from 'pg';
import { testDatabaseUrl } from '@velocity/testing';
import { outageOf } from './outage';
import { requestRedisOptions } from './redis';

/** A TCP server that accepts and never answers: a service that hangs. */
async function silentServer(): Promise<{ port: number; sockets: Set<Socket>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    sockets,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const { port, close } = await silentServer();
  await close();
  return port;
}

const rejectionOf = async (promise: Promise<unknown>): Promise<unknown> => promise.then(() => new Error('it succeeded'), (err: unknown) => err);

/** Each error here is what the real driver gives, not a copy of its message. */
describe('outageOf', () => {
  describe('Redis, on the api\'s fail-fast connection', () => {
    it('is an outage when Redis is not connected (no offline queue)', async () => {
      const redis = new Redis(`redis://127.0.0.1:${await closedPort()}`, { ...requestRedisOptions(200), retryStrategy: () => null });
      redis.on('error', () => undefined);
      const err = await rejectionOf(redis.get('k'));
      redis.disconnect();
      expect(outageOf(err)).toEqual({ dependency: 'redis', detail: expect.stringContaining('enableOfflineQueue') });
    });

    it('is an outage when Redis does not answer within the command timeout', async () => {
      const silent = await silentServer();
      const redis = new Redis(`redis://127.0.0.1:${silent.port}`, { ...requestRedisOptions(100), enableReadyCheck: false, retryStrategy: () => null });
      redis.on('error', () => undefined);
      await new Promise((resolve) => redis.once('ready', resolve));
      const err = await rejectionOf(redis.get('k'));
      redis.disconnect();
      await silent.close();
      expect(outageOf(err)).toEqual({ dependency: 'redis', detail: 'Command timed out' });
    });

    it('is an outage when the connection drops with the command in flight (no retry)', async () => {
      const silent = await silentServer();
      const redis = new Redis(`redis://127.0.0.1:${silent.port}`, { ...requestRedisOptions(2000), enableReadyCheck: false, retryStrategy: () => null });
      redis.on('error', () => undefined);
      await new Promise((resolve) => redis.once('ready', resolve));
      const pending = rejectionOf(redis.get('k'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      for (const socket of silent.sockets) socket.destroy();
      const err = await pending;
      redis.disconnect();
      await silent.close();
      expect(outageOf(err)?.dependency).toBe('redis');
    });

    it('is no outage for a command Redis refuses', async () => {
      const redis = new Redis('redis://127.0.0.1:6379', requestRedisOptions(1000));
      await new Promise((resolve) => redis.once('ready', resolve));
      const err = await rejectionOf(redis.call('NO-SUCH-COMMAND'));
      redis.disconnect();
      expect(err).toBeInstanceOf(Error);
      expect(outageOf(err)).toBeNull();
    });
  });

  describe('Postgres, through pg\'s pool', () => {
    it('is an outage when nothing listens', async () => {
      const pool = new Pool({ connectionString: `postgres://postgres@127.0.0.1:${await closedPort()}/x`, connectionTimeoutMillis: 500 });
      const err = await rejectionOf(pool.query('select 1'));
      await pool.end();
      expect(outageOf(err)).toMatchObject({ dependency: 'database' });
    });

    it('is an outage when no connection comes within the timeout', async () => {
      const silent = await silentServer();
      const pool = new Pool({ connectionString: `postgres://postgres@127.0.0.1:${silent.port}/x`, connectionTimeoutMillis: 100 });
      const err = await rejectionOf(pool.query('select 1'));
      await pool.end().catch(() => undefined);
      await silent.close();
      expect(outageOf(err)).toMatchObject({ dependency: 'database' });
    });

    it('is an outage when a statement gets no answer within the timeout, and not for a statement Postgres refuses', async () => {
      const pool = new Pool({ connectionString: testDatabaseUrl(), query_timeout: 100 });
      const timedOut = await rejectionOf(pool.query('select pg_sleep(1)'));
      const refused = await rejectionOf(pool.query('select * from no_such_table'));
      await pool.end();
      expect(outageOf(timedOut)).toEqual({ dependency: 'database', detail: 'Query read timeout' });
      expect(outageOf(refused)).toBeNull();
    });
  });

  it('finds an outage in an error\'s causes, and none in an ordinary error', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(outageOf(new Error('could not load', { cause }))).toMatchObject({ dependency: 'database' });
    expect(outageOf(new Error('Project x does not exist'))).toBeNull();
    expect(outageOf('a string')).toBeNull();
  });
});
