import { machineApiSocketOf, type Config } from '../config';
import type { MachineProvider } from '../machine-provider';
import type { SessionStore } from '../session-store';
import { faultsOf } from '../faults';
import { FaultInjectingMachineProvider } from './fault-injecting-machine-provider';
import { FlyMachineProvider } from './fly-machine-provider';
import { LocalMachineProvider } from './local-machine-provider';
import { NoopMachineProvider } from './noop-machine-provider';
import { PostgresSessionStore } from './postgres-session-store';

/** Composition roots pick adapters here, by configuration; business logic never does. */
export function createSessionStore(config: Config): SessionStore {
  if (config.SESSION_STORE === 'supabase') {
    // Loaded only when chosen: supabase-js costs every process that never uses it ~50 ms at start.
    const { SupabaseSessionStore } = require('./supabase-session-store') as typeof import('./supabase-session-store');
    // loadConfig refuses SESSION_STORE=supabase without these two.
    return new SupabaseSessionStore({ url: config.SUPABASE_URL ?? '', serviceRoleKey: config.SUPABASE_SERVICE_ROLE_KEY ?? '' });
  }
  return new PostgresSessionStore(config.DATABASE_URL, { max: config.DATABASE_POOL_MAX, min: config.DATABASE_POOL_MIN });
}

export function createMachineProvider(config: Config): MachineProvider {
  if (config.MACHINE_PROVIDER === 'noop') return new NoopMachineProvider(); // benchmarks only; loadConfig refuses it in production
  const provider: MachineProvider =
    config.MACHINE_PROVIDER === 'fly'
      ? new FlyMachineProvider({
          apiUrl: config.FLY_API_URL,
          // loadConfig refuses MACHINE_PROVIDER=fly without these three.
          token: config.FLY_API_TOKEN ?? '',
          appName: config.FLY_APP_NAME ?? '',
          image: config.FLY_IMAGE ?? '',
          region: config.FLY_REGION,
        })
      : new LocalMachineProvider({
          dir: config.LOCAL_MACHINES_DIR,
          sandbox: config.MACHINE_SANDBOX,
          machineUid: config.MACHINE_UID,
          machineGid: config.MACHINE_GID,
          apiSocket: machineApiSocketOf(config),
        });
  const faults = faultsOf(config);
  return faults && (faults.failCreate > 0 || faults.hangCreate > 0) ? new FaultInjectingMachineProvider(provider, faults) : provider;
}
