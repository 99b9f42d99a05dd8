import { ConfigError, type Config } from '@velocity/contracts';

/**
 * Faults the system can inject into itself, for the fault suite and tests:
 * machine creates that fail or hang, and a pause before each provisioning step
 * (so a test can kill a worker at a chosen step). Never in production.
 */
export interface Faults {
  /** Share of machine creates that fail with a transient error (0..1). */
  failCreate: number;
  /** Share of machine creates that never answer (0..1). */
  hangCreate: number;
  /** Pause before each provisioning step, in ms. */
  stepDelayMs: number;
}

const KEYS: Record<string, keyof Faults> = { 'fail-create': 'failCreate', 'hang-create': 'hangCreate', 'step-delay': 'stepDelayMs' };

/** The faults of FAULTS, or null when none are set; a ConfigError in production or for an unknown key. */
export function faultsOf(config: Pick<Config, 'FAULTS' | 'NODE_ENV'>): Faults | null {
  if (!config.FAULTS) return null;
  if (config.NODE_ENV === 'production') throw new ConfigError('FAULTS', 'must not be set when NODE_ENV=production');
  const faults: Faults = { failCreate: 0, hangCreate: 0, stepDelayMs: 0 };
  for (const pair of config.FAULTS.split(',')) {
    const [key, value] = pair.split('=');
    const field = KEYS[key];
    if (!field) throw new ConfigError('FAULTS', `has an unknown fault "${key}"; known: ${Object.keys(KEYS).join(', ')}`);
    faults[field] = Number(value);
  }
  return faults;
}
