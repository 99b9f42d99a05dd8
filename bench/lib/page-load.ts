import { chromium, type Browser } from 'playwright-core';
import type { FixtureFile } from '@velocity/testing';

/** The committed ~100-module React app the page-load part loads (libs/testing/fixtures/projects). */
export const PAGE_LOAD_FIXTURE = 'hundred-modules';

/** The name of the mark the fixture's `App` sets in its effect, after every module of the page rendered. */
const RENDERED_MARK = 'app-rendered';

/** One cold load of the page. */
export interface PageLoad {
  /** Navigation start → the app's `app-rendered` mark (the page's own clock). */
  ms: number;
  /** Requests the page made until then, the document included. */
  requests: number;
  /** Distinct `data-module` values in the page then: the component modules that rendered. */
  modules: number;
}

export interface PageLoadRuns {
  routed: PageLoad[];
  direct: PageLoad[];
  /** Component modules the fixture has (each renders its `data-module`); every load rendered all of them. */
  modules: number;
  warmUps: number;
}

/**
 * Component modules of the fixture: every `.jsx` file but the entry, each of
 * which renders an element with `data-module` (see the fixture's README).
 */
export function componentModulesOf(files: FixtureFile[]): number {
  return files.filter((file) => file.path.endsWith('.jsx') && file.path !== 'src/main.jsx').length;
}

/** Debian's Chromium driven by playwright-core (no browser download), as the e2e tests run it. */
function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/**
 * Loads the page `loads` times from each URL after `warmUps` loads of each, the
 * two taking turns (which goes first alternates, so drift in the machine's load
 * falls on both alike). Every load is cold: a browser context of its own has an
 * empty cache and no open connection. A load that fails a request, throws, or
 * renders fewer than `modules` component modules fails the run.
 */
export async function measurePageLoads(options: {
  routedUrl: string;
  directUrl: string;
  loads: number;
  warmUps: number;
  modules: number;
  /** Each answer of the routed document (a handed-out URL), for the "Session not found" count. */
  onRoutedDocument?: (status: number, body: string) => void;
  log: (msg: string) => void;
}): Promise<PageLoadRuns> {
  const browser = await launchBrowser();
  try {
    const load = async (which: 'routed' | 'direct') => {
      const url = which === 'routed' ? options.routedUrl : options.directUrl;
      const result = await loadOnce(browser, url, which === 'routed' ? options.onRoutedDocument : undefined);
      if (result.modules !== options.modules) throw new Error(`${url} rendered ${result.modules} of ${options.modules} component modules`);
      return result;
    };
    for (let i = 0; i < options.warmUps; i++) {
      const [routed, direct] = [await load('routed'), await load('direct')];
      options.log(`     warm-up ${i + 1}/${options.warmUps} (not counted): routed ${routed.ms.toFixed(0)} ms, direct ${direct.ms.toFixed(0)} ms`);
    }
    const runs: PageLoadRuns = { routed: [], direct: [], modules: options.modules, warmUps: options.warmUps };
    for (let i = 0; i < options.loads; i++) {
      const order = i % 2 === 0 ? (['routed', 'direct'] as const) : (['direct', 'routed'] as const);
      for (const which of order) runs[which].push(await load(which));
      const [routed, direct] = [runs.routed.at(-1)!, runs.direct.at(-1)!];
      options.log(`     ${i + 1}/${options.loads}: routed ${routed.ms.toFixed(0)} ms (${routed.requests} requests), direct ${direct.ms.toFixed(0)} ms (${direct.requests} requests)`);
    }
    return runs;
  } finally {
    await browser.close();
  }
}

/** One load in a fresh context: until the app's mark, then what the page measured itself. */
async function loadOnce(browser: Browser, url: string, onDocument?: (status: number, body: string) => void): Promise<PageLoad> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const failures: string[] = [];
    const isFavicon = (u: string) => new URL(u).pathname === '/favicon.ico';
    page.on('requestfailed', (request) => {
      if (!isFavicon(request.url())) failures.push(`${request.url()} ${request.failure()?.errorText ?? 'failed'}`);
    });
    page.on('response', (response) => {
      if (response.status() >= 400 && !isFavicon(response.url())) failures.push(`${response.url()} ${response.status()}`);
    });
    page.on('pageerror', (error) => failures.push(`page error: ${error.message}`));
    const answer = await page.goto(url, { waitUntil: 'commit', timeout: 60_000 });
    await page.waitForFunction((mark) => performance.getEntriesByName(mark).length > 0, RENDERED_MARK, { timeout: 60_000 });
    const measured = await page.evaluate((mark) => {
      const at = performance.getEntriesByName(mark)[0].startTime;
      const modules = new Set(Array.from(document.querySelectorAll('[data-module]'), (element) => element.getAttribute('data-module')));
      return { ms: at, requests: 1 + performance.getEntriesByType('resource').filter((entry) => entry.startTime <= at).length, modules: modules.size };
    }, RENDERED_MARK);
    if (answer && onDocument) onDocument(answer.status(), await answer.text());
    if (failures.length > 0) throw new Error(`loading ${url}: ${failures.slice(0, 5).join('; ')}`);
    return measured;
  } finally {
    await context.close();
  }
}
