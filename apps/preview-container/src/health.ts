import { withTimeout } from '@velocity/contracts';

/**
 * What `/health` reports, each check 'ok' or 'failing'; 503 while any fails:
 * - `devServer`: Vite transforms a module (its own client, cached after the first time);
 * - `data`: the project's files are loaded and the last live change was applied;
 * - `session`: the session has not ended (the api said so on the file-changes stream).
 */
export type Check = 'ok' | 'failing';

export interface HealthReport {
  status: 'ok' | 'failing';
  devServer: Check;
  data: Check;
  session: Check;
  sessionId: string;
  /** Why the project's dev server could not start, when it could not. */
  startFailure?: string;
}

export interface HealthState {
  filesLoaded: boolean;
  /** The session a pooled machine was claimed for (before that, its route id is reported). */
  sessionId?: string;
  /** A pooled machine that no session has claimed yet. */
  pooled?: boolean;
  /** Whether Vite serves (set once it runs): true when it could transform a module. */
  devServerCheck?: () => Promise<boolean>;
  /** Why the last live file change could not be applied; unset once one is. */
  dataError?: string;
  /** Why the project's dev server could not start (its config): the machine will not serve it. */
  startFailure?: string;
  /** Set when the api says the session has ended (`ended` event or 410 on the file-changes stream). */
  sessionEnded?: boolean;
}

export async function healthReport(sessionId: string, state: HealthState, probeTimeoutMs = 2_000): Promise<HealthReport> {
  const data: Check = state.filesLoaded && !state.dataError ? 'ok' : 'failing';
  const session: Check = state.sessionEnded ? 'failing' : 'ok';
  const serves = state.devServerCheck && (await withTimeout(state.devServerCheck(), probeTimeoutMs, 'the dev server to transform its client').catch(() => false));
  const devServer: Check = serves ? 'ok' : 'failing';
  const status = data === 'ok' && devServer === 'ok' && session === 'ok' ? 'ok' : 'failing';
  return { status, devServer, data, session, sessionId, ...(state.startFailure !== undefined ? { startFailure: state.startFailure } : {}) };
}
