import { request } from 'node:http';

/**
 * What `/health` reports: the files are loaded and the dev server answers.
 */
export type Check = 'ok' | 'failing';

export interface HealthReport {
  status: 'ok' | 'failing';
  devServer: Check;
  data: Check;
  session: string;
}

export interface HealthState {
  filesLoaded: boolean;
  /** Internal URL of a cheap dev-server resource, set once Vite listens. */
  devServerProbeUrl?: string;
}

export async function healthReport(sessionId: string, state: HealthState, probeTimeoutMs = 2_000): Promise<HealthReport> {
  const data: Check = state.filesLoaded ? 'ok' : 'failing';
  const devServer: Check = state.devServerProbeUrl && (await probe(state.devServerProbeUrl, probeTimeoutMs)) ? 'ok' : 'failing';
  return { status: data === 'ok' && devServer === 'ok' ? 'ok' : 'failing', devServer, data, session: sessionId };
}

/** True when a GET of `url` answers 200 within `timeoutMs`. */
export function probe(url: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs, headers: { accept: '*/*' } }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end();
  });
}
