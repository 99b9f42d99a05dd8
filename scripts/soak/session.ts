import WebSocket from 'ws';
import { pageEntries, walkPageModules } from '@velocity/contracts';
import { lookupLocalhostNames, openHttp, readText, requestText } from '@velocity/runtime';
import { runSession, stopSessions, waitEnded } from '../../bench/lib/client';

/** The file each session edits: the template's root component, so Vite answers the write with an HMR update. */
export const EDITED_FILE = 'src/App.jsx';

/** How long each part of a session may take before it counts as failed. */
const LIMITS = { readyMs: 120_000, pageMs: 20_000, hmrMs: 20_000, endMs: 60_000 };

export interface SoakSessionOptions {
  baseUrl: string;
  projectId: string;
  /** The file's text as the template has it; each write adds a line of its own to it. */
  original: string;
  /** From POST to DELETE. */
  lifeMs: number;
  /** Called once the api accepted the session (so an interrupted run knows what to end). */
  onStarted?: (sessionId: string) => void;
}

/** What one session did: its id, each part's time, and the first thing that went wrong. */
export interface SoakSessionResult {
  sessionId?: string;
  readyMs?: number;
  modules?: number;
  hmrMs?: number;
  error?: string;
}

/**
 * One session used as a person would: asked for and followed to `ready` over
 * SSE, its page loaded through the preview URL (the HTML, then every project
 * module it imports, as the provisioner's verification walks them), a file
 * written through the api and its HMR update seen on Vite's socket, the new
 * text served; then ended with DELETE once `lifeMs` has passed since the POST.
 */
export async function runSoakSession(options: SoakSessionOptions): Promise<SoakSessionResult> {
  const started = Date.now();
  const result: SoakSessionResult = {};
  try {
    const run = await runSession(options.baseUrl, { fetchUrl: false, projectId: options.projectId, timeoutMs: LIMITS.readyMs });
    result.sessionId = run.sessionId;
    options.onStarted?.(run.sessionId);
    result.readyMs = Math.round(run.readyMs);
    result.modules = await loadPage(run.previewUrl);
    result.hmrMs = await editAndSeeUpdate(options, run.previewUrl);
    await new Promise((r) => setTimeout(r, Math.max(0, started + options.lifeMs - Date.now())));
  } catch (err) {
    result.error = (err as Error).message.split('\n')[0].slice(0, 300);
  } finally {
    if (result.sessionId) await endSession(options.baseUrl, result.sessionId, result);
  }
  return result;
}

/** DELETE, then wait until the session reads `ended`; a failure here is the session's error too. */
async function endSession(baseUrl: string, sessionId: string, result: SoakSessionResult): Promise<void> {
  try {
    await stopSessions(baseUrl, [sessionId]);
    await waitEnded(baseUrl, [sessionId], LIMITS.endMs);
  } catch (err) {
    result.error ??= `ending: ${(err as Error).message.slice(0, 300)}`;
  }
}

/** GETs the page and walks its modules; returns how many were asked for; throws naming what failed. */
async function loadPage(previewUrl: string): Promise<number> {
  const page = await requestText(previewUrl, { headers: { accept: 'text/html' }, signal: AbortSignal.timeout(LIMITS.pageMs) });
  if (page.status !== 200 || !page.body.includes('/@vite/client')) throw new Error(`page ${previewUrl} answered ${page.status}: ${page.body.slice(0, 120)}`);
  const signal = AbortSignal.timeout(LIMITS.pageMs);
  const walk = await walkPageModules(pageEntries(page.body), async (path) => {
    const res = await openHttp(new URL(path, previewUrl).href, { signal, headers: { accept: '*/*', 'sec-fetch-dest': 'script' } });
    return { status: res.statusCode ?? 0, body: await readText(res) };
  });
  if (walk.failed.length > 0) throw new Error(`page modules failed: ${walk.failed.map((f) => `${f.path} ${f.status ?? f.error}`).join(', ')}`);
  if (walk.requested === 0) throw new Error(`page ${previewUrl} names no project module`);
  return walk.requested;
}

/**
 * Opens Vite's HMR socket through the preview URL, as the page's client does,
 * writes the edited file through the api, waits for the update naming it, and
 * checks the updated module serves the new text. Returns write → update in ms.
 */
async function editAndSeeUpdate(options: SoakSessionOptions, previewUrl: string): Promise<number> {
  const socket = await openHmrSocket(previewUrl);
  try {
    const marker = `soak ${Date.now()} ${Math.random().toString(36).slice(2)}`;
    const update = socket.next((m) => m.type === 'update' && m.updates?.some((u: { path?: string }) => u.path === `/${EDITED_FILE}`));
    const wrote = Date.now();
    const put = await fetch(`${options.baseUrl}/v1/projects/${options.projectId}/files/${EDITED_FILE}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ content: `${options.original}\n// ${marker}\n` }),
      signal: AbortSignal.timeout(LIMITS.hmrMs),
    });
    if (put.status !== 200 && put.status !== 201) throw new Error(`PUT ${EDITED_FILE} answered ${put.status}: ${(await put.text()).slice(0, 120)}`);
    await put.arrayBuffer().catch(() => undefined);
    const message = await update;
    const ms = Date.now() - wrote;
    const timestamp = message.updates.find((u: { path?: string }) => u.path === `/${EDITED_FILE}`)?.timestamp;
    const served = await requestText(`${new URL(`/${EDITED_FILE}?t=${timestamp}`, previewUrl).href}`, { signal: AbortSignal.timeout(LIMITS.pageMs), headers: { 'sec-fetch-dest': 'script' } });
    if (served.status !== 200 || !served.body.includes(marker)) throw new Error(`after the HMR update ${EDITED_FILE} answered ${served.status} without the written text`);
    return ms;
  } finally {
    socket.close();
  }
}

interface HmrSocket {
  /** The first message (received or to come) that `match` accepts; rejects after LIMITS.hmrMs naming what it waited for. */
  next(match: (message: any) => boolean): Promise<any>;
  close(): void;
}

/** Vite's HMR socket on the preview's origin: the `vite-hmr` subprotocol and the page's token, the page's Origin. */
async function openHmrSocket(previewUrl: string): Promise<HmrSocket> {
  const client = await requestText(new URL('/@vite/client', previewUrl).href, { signal: AbortSignal.timeout(LIMITS.pageMs) });
  const token = /const wsToken = "([^"]+)"/.exec(client.body)?.[1];
  if (!token) throw new Error(`no wsToken in ${previewUrl}@vite/client (status ${client.status})`);
  const origin = new URL(previewUrl).origin;
  // ws hands its options on to http.request, `lookup` too (its types leave it out): `<routeId>.localhost` is loopback.
  const options = { origin, lookup: lookupLocalhostNames } as WebSocket.ClientOptions;
  const ws = new WebSocket(`${origin.replace(/^http/, 'ws')}/?token=${encodeURIComponent(token)}`, 'vite-hmr', options);
  const messages: any[] = [];
  const waiters = new Set<() => void>();
  let closed: Error | undefined;
  ws.on('message', (data) => {
    messages.push(JSON.parse(String(data)));
    waiters.forEach((wake) => wake());
  });
  const fail = (err: Error) => {
    closed ??= err;
    waiters.forEach((wake) => wake());
  };
  ws.on('error', fail);
  ws.on('close', () => fail(new Error('the HMR socket closed')));
  const next = (match: (message: any) => boolean) =>
    new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => settle(() => reject(new Error(`Timed out after ${LIMITS.hmrMs} ms waiting for an HMR message on ${origin}`))), LIMITS.hmrMs);
      const settle = (done: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        done();
      };
      const check = () => {
        const found = messages.find(match);
        if (found) settle(() => resolve(found));
        else if (closed) settle(() => reject(closed));
      };
      waiters.add(check);
      check();
    });
  await next((m) => m.type === 'connected');
  return { next, close: () => ws.terminate() };
}
