import type { Config } from '../config';
import type { MachineProvider } from '../machine-provider';
import type { SessionStore } from '../session-store';
import { LocalMachineProvider } from './local-machine-provider';
import { PostgresSessionStore } from './postgres-session-store';

/** Composition roots pick adapters here, by configuration; business logic never does. */
export function createSessionStore(config: Config): SessionStore {
  return new PostgresSessionStore(config.DATABASE_URL);
}

export function createMachineProvider(config: Config): MachineProvider {
  return new LocalMachineProvider({ dir: config.LOCAL_MACHINES_DIR });
}
