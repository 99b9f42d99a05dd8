import { DEMO_PROJECT_ID, followSessionEvents, loadConfig, publicUrl } from '@velocity/shared';

/**
 * `npm run preview -- [projectId]`: asks for a preview, prints each step as it
 * streams in, and prints the URL once the session is ready.
 */
async function main() {
  const base = publicUrl(loadConfig());
  const projectId = process.argv[2] ?? DEMO_PROJECT_ID;
  const res = await fetch(`${base}/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ projectId }),
  });
  const created = await res.json();
  if (res.status !== 202) throw new Error(`POST /v1/sessions answered ${res.status}: ${created.message ?? JSON.stringify(created)}`);
  console.log(`session ${created.sessionId} queued`);
  const started = Date.now();
  const { events } = await followSessionEvents({
    baseUrls: [base],
    sessionId: created.sessionId,
    timeoutMs: 120_000,
    onEvent: (event) => {
      const t = `${((Date.now() - started) / 1000).toFixed(2)}s`.padStart(7);
      if (event.type === 'progress' && event.state === 'done') console.log(`${t}  ✓ ${event.step} (${event.ms} ms)`);
      if (event.type === 'ready') console.log(`${t}  ready: ${event.previewUrl}`);
    },
  });
  const last = events.at(-1)!;
  if (last.type === 'failed') throw new Error(`failed at ${last.step ?? 'start'}: ${last.reason}`);
}

main().catch((err) => {
  console.error(`preview: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
