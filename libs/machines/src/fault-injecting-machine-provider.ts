import type { Faults } from './faults';
import type { Machine, MachineProvider, MachineSpec } from './machine-provider';

/**
 * Wraps a provider and makes some creates fail or hang, as a cloud API does on
 * a bad day. Chosen by the FAULTS setting; for the fault suite and tests only.
 */
export class FaultInjectingMachineProvider implements MachineProvider {
  readonly name: string;

  constructor(
    private readonly inner: MachineProvider,
    private readonly faults: Pick<Faults, 'failCreate' | 'hangCreate'>,
    private readonly random: () => number = Math.random,
  ) {
    this.name = `${inner.name}+faults`;
  }

  get isolation() {
    return this.inner.isolation;
  }

  get machineApiUrl() {
    return this.inner.machineApiUrl;
  }

  async create(spec: MachineSpec, signal?: AbortSignal): Promise<Machine> {
    const roll = this.random();
    if (roll < this.faults.failCreate) throw new Error(`injected fault: machine create for session ${spec.sessionId} failed`);
    if (roll < this.faults.failCreate + this.faults.hangCreate) return hang(signal);
    return this.inner.create(spec, signal);
  }

  waitStarted(machine: Machine, timeoutMs: number, signal?: AbortSignal) {
    return this.inner.waitStarted(machine, timeoutMs, signal);
  }
  /** The inner provider's, when it can tell (an optional method stays absent otherwise). */
  get exited() {
    return this.inner.exited?.bind(this.inner);
  }
  get(machineId: string) {
    return this.inner.get(machineId);
  }
  findBySession(sessionId: string) {
    return this.inner.findBySession(sessionId);
  }
  restorePriority(machineId: string) {
    return this.inner.restorePriority?.(machineId) ?? Promise.resolve(false);
  }
  destroy(machineId: string) {
    return this.inner.destroy(machineId);
  }
  list() {
    return this.inner.list();
  }
  close() {
    return this.inner.close();
  }
}

/** A create that never answers; only the caller's abort (its timeout) ends the wait. */
function hang(signal?: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason), { once: true }));
}
