import { TimeoutError, openHttp, previewUrlOf, readText, sleep } from '@velocity/shared';
import { awayFromTurn, required, type Step } from '../provision-context';

/**
 * The preview URL answers through the same routing path a browser takes: 200
 * and the app's HTML with Vite's client in it. Until this passes, no URL leaves.
 */
export const verifyUrlStep: Step = {
  name: 'verify-url',
  timeoutMs: (config) => config.VERIFY_TIMEOUT_MS,
  async run(ctx, budgetMs) {
    const session = required(ctx.session, 'the session row');
    const url = previewUrlOf(ctx.deps.config, ctx.routeId ?? session.routeId ?? session.id);
    const deadline = Date.now() + budgetMs;
    let last = 'no answer yet';
    while (Date.now() < deadline) {
      last = await probe(url);
      if (last === 'ok') {
        ctx.previewUrl = url;
        return;
      }
      // A machine still warming up is waited for without holding a turn.
      await awayFromTurn(ctx, () => sleep(50, ctx.signal));
    }
    throw new TimeoutError(`${url} to answer 200 with the app's HTML (last: ${last})`, budgetMs);
  },
};

/** 'ok' when the URL serves the app; otherwise what it did instead. */
async function probe(url: string): Promise<string> {
  try {
    const res = await openHttp(url, { signal: AbortSignal.timeout(5000), headers: { accept: 'text/html' } });
    const body = await readText(res);
    if (res.statusCode !== 200) return `status ${res.statusCode}: ${body.slice(0, 120)}`;
    return body.includes('/@vite/client') ? 'ok' : 'status 200 without the Vite client script';
  } catch (err) {
    return (err as Error).message;
  }
}
