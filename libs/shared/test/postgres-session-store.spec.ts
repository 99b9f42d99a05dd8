import { PostgresSessionStore } from '../src/adapters/postgres-session-store';
import { sessionStoreContract } from './session-store.contract';
import { testDatabaseUrl } from './test-env';

// Pool of 10, so the contract's concurrent calls really run in parallel.
sessionStoreContract('PostgresSessionStore', async () => new PostgresSessionStore(testDatabaseUrl(), { max: 10 }));

describe('PostgresSessionStore', () => {
  it('close() is idempotent', async () => {
    const store = new PostgresSessionStore(testDatabaseUrl());
    await store.getSession('00000000-0000-0000-0000-000000000000');
    await store.close();
    await expect(store.close()).resolves.toBeUndefined();
  });
});
