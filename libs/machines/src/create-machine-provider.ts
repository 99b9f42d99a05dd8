import type Redis from 'ioredis';
import { flyMachinesSettings, machineApiSocketOf, type Config } from '@velocity/contracts';
import type { MachineProvider } from './machine-provider';
import { faultsOf } from './faults';
import { FaultInjectingMachineProvider } from './fault-injecting-machine-provider';
import { FlyMachineProvider } from './fly-machine-provider';
import { FlyRateLimiter } from './fly-rate-limiter';
import { LocalMachineProvider } from './local-machine-provider';
import { NoopMachineProvider } from './noop-machine-provider';

/**
 * Composition roots pick the provider here, by configuration; business logic never does.
 * `redis`: the Fly provider's calls then share Fly's rate limits with every other process of the deployment.
 */
export function createMachineProvider(config: Config, deps: { redis?: Redis } = {}): MachineProvider {
  if (config.MACHINE_PROVIDER === 'noop') return new NoopMachineProvider(); // benchmarks only; loadConfig refuses it in production
  const provider: MachineProvider =
    config.MACHINE_PROVIDER === 'fly'
      ? new FlyMachineProvider({
          apiUrl: config.FLY_API_URL,
          ...flyMachinesSettings(config),
          region: config.FLY_REGION,
          limiter: deps.redis ? new FlyRateLimiter(deps.redis, config.QUEUE_PREFIX) : undefined,
        })
      : new LocalMachineProvider({
          dir: config.LOCAL_MACHINES_DIR,
          entry: config.PREVIEW_CONTAINER_ENTRY,
          sandbox: config.MACHINE_SANDBOX,
          machineUid: config.MACHINE_UID,
          machineGid: config.MACHINE_GID,
          apiSocket: machineApiSocketOf(config),
        });
  const faults = faultsOf(config);
  return faults && (faults.failCreate > 0 || faults.hangCreate > 0) ? new FaultInjectingMachineProvider(provider, faults) : provider;
}
