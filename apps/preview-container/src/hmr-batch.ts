import { resolve } from 'node:path';
import type { ViteDevServer } from 'vite';

/** The HMR messages a batch holds back and merges; every other message goes out as it comes. */
type HeldPayload = { type: 'update'; updates: { type: string; path: string; acceptedPath: string }[] } | { type: 'full-reload' } | { type: 'prune' };

/** A batch's messages are sent once Vite has been quiet this long after the last file it saw. */
const QUIET_MS = 60;
/** Never held longer than this: a file Vite's watcher does not report (ignored) must not hold the page. */
const MAX_HOLD_MS = 3_000;

/**
 * Writes several files as one hot update: while `write` runs and Vite's
 * watcher reports the files, Vite's HMR messages to the page are held; then
 * they go out as one `update` carrying every module (the page fetches them in
 * one round), or as one full reload if any asked for one. Vite (5 to 8) sends
 * a page's HMR messages through `server.ws.send`, looked up on each call, and a
 * restart replaces `server.ws`: it is wrapped per batch, never for good.
 */
export async function asOneHotUpdate(server: Pick<ViteDevServer, 'ws' | 'watcher'>, root: string, paths: readonly string[], write: () => Promise<void>): Promise<void> {
  const ws = server.ws;
  const send = ws.send;
  const held: HeldPayload[] = [];
  let lastActivity = Date.now();
  ws.send = ((...args: unknown[]) => {
    const payload = args[0] as { type?: string } | undefined;
    if (args.length === 1 && payload && (payload.type === 'update' || payload.type === 'full-reload' || payload.type === 'prune')) {
      held.push(payload as HeldPayload);
      lastActivity = Date.now();
      return;
    }
    return (send as (...a: unknown[]) => void).apply(ws, args);
  }) as typeof ws.send;
  const waiting = new Set(paths.map((path) => resolve(root, path)));
  const seen = (file: string) => {
    if (waiting.delete(resolve(file))) lastActivity = Date.now();
  };
  server.watcher.on('all', onWatcherEvent);
  function onWatcherEvent(_event: string, file: string) {
    seen(file);
  }
  const started = Date.now();
  try {
    await write();
    lastActivity = Date.now();
    // Until Vite's watcher has reported every file and its HMR handling has gone quiet.
    while (Date.now() - started < MAX_HOLD_MS && (waiting.size > 0 || Date.now() - lastActivity < QUIET_MS)) await sleep(15);
  } finally {
    server.watcher.off('all', onWatcherEvent);
    ws.send = send;
    const merged = mergeHeld(held);
    if (merged) send.call(ws, merged as never);
  }
}

/** One message for the batch: a full reload if any asked for one, else one update with every module once. */
export function mergeHeld(held: readonly HeldPayload[]): HeldPayload | null {
  if (held.length === 0) return null;
  if (held.some((payload) => payload.type === 'full-reload')) return { type: 'full-reload' };
  const updates = new Map<string, { type: string; path: string; acceptedPath: string }>();
  for (const payload of held) {
    if (payload.type !== 'update') continue;
    for (const update of payload.updates) updates.set(`${update.type}\0${update.path}\0${update.acceptedPath}`, update);
  }
  return updates.size > 0 ? { type: 'update', updates: [...updates.values()] } : null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
