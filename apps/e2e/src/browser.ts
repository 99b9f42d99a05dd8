import { chromium, type Browser, type BrowserContext, type Page, type WebSocket } from 'playwright-core';
import type { SessionEvent } from '@velocity/contracts';
import { eventsUntilTerminal, postSession } from './system';

/**
 * Browser helpers for end-to-end tests: Debian's Chromium driven by
 * playwright-core (no browser download), and the api calls a browser test needs.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** What a page did while a test watched it. */
export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** Requests that failed or answered ≥ 400 (favicon aside), as "METHOD url status|error". */
  failures: string[];
  /** Console errors and uncaught exceptions. */
  errors: string[];
  /** Every websocket the page opened. */
  websockets: WebSocket[];
  /** Vite HMR messages received on any websocket, parsed (`{ type: 'update' | 'full-reload' | ... }`). */
  hmrMessages: { type?: string; [key: string]: unknown }[];
  /** Main-frame navigations after the first load (full reloads). */
  reloads: number;
  close(): Promise<void>;
}

/** Opens `url` in a context of its own and records failures, websockets, HMR messages and reloads. */
export async function openWatched(browser: Browser, url: string): Promise<WatchedPage> {
  const context = await browser.newContext();
  const page = await context.newPage();
  let loads = 0;
  const watched: WatchedPage = {
    page,
    context,
    failures: [],
    errors: [],
    websockets: [],
    hmrMessages: [],
    reloads: 0,
    close: () => context.close(),
  };
  const isFavicon = (u: string) => new URL(u).pathname.endsWith('/favicon.ico');
  page.on('requestfailed', (request) => {
    if (!isFavicon(request.url())) watched.failures.push(`${request.method()} ${request.url()} ${request.failure()?.errorText ?? 'failed'}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400 && !isFavicon(response.url())) {
      watched.failures.push(`${response.request().method()} ${response.url()} ${response.status()}`);
    }
  });
  page.on('console', (message) => {
    const at = message.location().url;
    if (message.type() === 'error' && !(at && isFavicon(at))) watched.errors.push(`console: ${message.text()} (${at})`);
  });
  page.on('pageerror', (error) => watched.errors.push(`pageerror: ${error.message}`));
  page.on('websocket', (ws) => {
    watched.websockets.push(ws);
    ws.on('framereceived', ({ payload }) => {
      try {
        watched.hmrMessages.push(JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8')));
      } catch {
        // not a Vite message
      }
    });
  });
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame() && ++loads > 1) watched.reloads++;
  });
  await page.goto(url, { waitUntil: 'load' });
  return watched;
}

/** Waits until the page's first `h1` reads `text`. */
export async function waitForHeading(page: Page, text: string, timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction((expected) => document.querySelector('h1')?.textContent?.trim() === expected, text, { timeout: timeoutMs });
}

/** The counter button's text (`count is N`). */
export async function counterText(page: Page): Promise<string> {
  return ((await page.locator('button', { hasText: 'count is' }).first().textContent()) ?? '').trim();
}

export async function clickCounter(page: Page, times: number): Promise<void> {
  const button = page.locator('button', { hasText: 'count is' }).first();
  for (let i = 0; i < times; i++) await button.click();
}

async function json(res: Response) {
  const text = await res.text();
  return text ? JSON.parse(text) : undefined;
}

export async function createProject(baseUrl: string, name: string, templateType: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${baseUrl}/v1/projects`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, templateType }),
  });
  return { status: res.status, body: await json(res) };
}

export async function putFile(baseUrl: string, projectId: string, path: string, content: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${baseUrl}/v1/projects/${projectId}/files/${path.split('/').map(encodeURIComponent).join('/')}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ content }),
  });
  return { status: res.status, body: await json(res) };
}

/** POST /v1/sessions and wait for `ready`: the session id and its preview URL. */
export async function startPreview(baseUrl: string, projectId: string, timeoutMs = 60_000): Promise<{ sessionId: string; previewUrl: string }> {
  const created = await postSession(baseUrl, { projectId });
  if (created.status !== 202) throw new Error(`POST /v1/sessions answered ${created.status}: ${JSON.stringify(created.body)}`);
  const { events } = await eventsUntilTerminal(baseUrl, created.body.sessionId, timeoutMs);
  const last = events.at(-1) as SessionEvent;
  if (last.type !== 'ready') throw new Error(`session ${created.body.sessionId} ended with ${JSON.stringify(last)}`);
  return { sessionId: created.body.sessionId, previewUrl: last.previewUrl };
}

/** Resolves once `check` returns true, polling; throws naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}
