import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { PostgresSessionStore } from '../src/postgres-session-store';
import { sessionStoreContract, testDatabaseUrl } from '@velocity/testing';

// Pool of 10, so the contract's concurrent calls really run in parallel.
sessionStoreContract('PostgresSessionStore', async () => new PostgresSessionStore(testDatabaseUrl(), { max: 10 }));

describe('PostgresSessionStore', () => {
  it('close() is idempotent', async () => {
    const store = new PostgresSessionStore(testDatabaseUrl());
    await store.getSession('00000000-0000-0000-0000-000000000000');
    await store.close();
    await expect(store.close()).resolves.toBeUndefined();
  });

  it('opens `min` connections at start, before any query; a query uses one of them; close() ends them', async () => {
    const name = `vp-min-${randomBytes(4).toString('hex')}`;
    const url = new URL(testDatabaseUrl());
    url.searchParams.set('application_name', name);
    const observer = new Client({ connectionString: testDatabaseUrl() });
    await observer.connect();
    const open = async () =>
      Number((await observer.query('select count(*) from pg_stat_activity where application_name = $1', [name])).rows[0].count);
    try {
      // No query at all: the connections are opened by the constructor.
      const store = new PostgresSessionStore(url.toString(), { max: 5, min: 3 });
      for (let i = 0; i < 100 && (await open()) < 3; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await open()).toBe(3);
      // One query uses one of them; none is added, none closed.
      await store.getSession('00000000-0000-0000-0000-000000000000');
      expect(await open()).toBe(3);
      await store.close();
      for (let i = 0; i < 100 && (await open()) > 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await open()).toBe(0);
    } finally {
      await observer.end();
    }
  });
});
