import { PROVISION_STEPS, sleep, type ProvisionStep } from '@velocity/contracts';
import type { FaultCluster } from './cluster';
import { runTrial, type TrialRow } from './trial';

/**
 * Settings every fault cluster runs with: short locks so a dead worker's jobs
 * move on within seconds, a pause before each step so a kill can land in it,
 * and a cleanup sweep every second to recover lost jobs and reap stuck sessions.
 */
export const FAULT_ENV = {
  PROVISION_DEADLINE_MS: '25000',
  // Fault sessions are of templates, which install nothing: the limit stays 30 s.
  INSTALL_TIMEOUT_MS: '5000',
  MACHINE_START_TIMEOUT_MS: '15000',
  VERIFY_TIMEOUT_MS: '15000',
  PROVISION_ATTEMPTS: '5',
  PROVISION_BACKOFF_MS: '300',
  PROVISION_LOCK_MS: '3000',
  PROVISION_STALLED_INTERVAL_MS: '1500',
  CLEANUP_SWEEP_EVERY_MS: '1000',
  SHUTDOWN_GRACE_MS: '1000',
  // A held event stream shows it is alive within seconds.
  SSE_HEARTBEAT_MS: '2000',
  FAULTS: 'step-delay=250',
};
/** Deadline plus the cleanup sweep's grace: every session has settled by then. */
export const SETTLE_MS = 60_000;

/** kill -9 of the provisioner holding a session's job just as it enters `step`; a fresh one takes its place. */
export async function killAtStep(cluster: FaultCluster, step: ProvisionStep, trials: number): Promise<TrialRow> {
  const rows: TrialRow[] = [];
  for (let i = 0; i < trials; i++) {
    rows.push(
      await runTrial(cluster, {
        fault: `kill -9 provisioner at ${step}`,
        sessions: 1,
        settleMs: SETTLE_MS,
        async inject({ sessionIds: [sessionId], waitForEvent }) {
          await waitForEvent(sessionId, (e) => e.type === 'progress' && e.step === step && e.state === 'started');
          // Land anywhere in the pause before the step's work or in the work itself.
          await sleep(Math.random() * 300);
          const killed = await cluster.killProvisionerOf(sessionId);
          if (killed === null) throw new Error(`no provisioner held session ${sessionId} at ${step}`);
          await cluster.startProvisioner();
        },
      }),
    );
  }
  return mergeRows(rows);
}

/** Rows of the same fault added up. */
export function mergeRows(rows: TrialRow[]): TrialRow {
  const sum = (key: keyof TrialRow) => rows.reduce((total, row) => total + (row[key] as number), 0);
  return {
    fault: rows[0].fault,
    trials: sum('trials'),
    asked: sum('asked'),
    active: sum('active'),
    error: sum('error'),
    stuck: sum('stuck'),
    orphanMachines: sum('orphanMachines'),
    duplicateMachines: sum('duplicateMachines'),
    clientsLeftWaiting: sum('clientsLeftWaiting'),
    clientReconnects: sum('clientReconnects'),
    ms: sum('ms'),
    problems: rows.flatMap((row) => row.problems),
  };
}

export function redisRestart(cluster: FaultCluster, sessions: number): Promise<TrialRow> {
  return runTrial(cluster, {
    fault: 'Redis restarted mid-provisioning',
    sessions,
    settleMs: SETTLE_MS,
    async inject({ sessionIds, waitForEvent }) {
      await waitForEvent(sessionIds[0], (e) => e.type === 'progress' && e.step === 'create-machine');
      await cluster.redis.restart(1000);
    },
  });
}

export function postgresOutage(cluster: FaultCluster, sessions: number, outageMs = 3000): Promise<TrialRow> {
  return runTrial(cluster, {
    fault: `Postgres unreachable for ${outageMs / 1000} s`,
    sessions,
    settleMs: SETTLE_MS,
    async inject({ sessionIds, waitForEvent }) {
      await waitForEvent(sessionIds[0], (e) => e.type === 'progress' && e.step === 'commit-session');
      cluster.pgProxy.cut(outageMs);
    },
  });
}

export function apiReplicaKilled(cluster: FaultCluster, sessions: number): Promise<TrialRow> {
  return runTrial(cluster, {
    fault: 'api replica killed under SSE clients',
    sessions,
    settleMs: SETTLE_MS,
    async inject({ sessionIds, waitForEvent }) {
      await waitForEvent(sessionIds[0], (e) => e.type === 'progress');
      cluster.killApi(0);
    },
  });
}

/** Rows that need no fault of their own beyond the cluster's FAULTS setting (failing or hanging creates). */
export function providerFaults(cluster: FaultCluster, label: string, sessions: number): Promise<TrialRow> {
  return runTrial(cluster, { fault: label, sessions, settleMs: SETTLE_MS, inject: async () => undefined });
}

export const STEPS: readonly ProvisionStep[] = PROVISION_STEPS;
