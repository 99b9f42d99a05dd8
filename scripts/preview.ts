import { DEMO_PROJECT_ID, loadConfig, publicUrl, readSse, sessionEventSchema } from '@velocity/shared';

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
  const stream = await fetch(`${base}${created.eventsUrl}`, { signal: AbortSignal.timeout(120_000) });
  if (!stream.ok || !stream.body) throw new Error(`events answered ${stream.status}`);
  for await (const frame of readSse(stream.body)) {
    const event = sessionEventSchema.parse(JSON.parse(frame.data));
    const t = `${((Date.now() - started) / 1000).toFixed(2)}s`.padStart(7);
    if (event.type === 'progress' && event.state === 'done') console.log(`${t}  ✓ ${event.step} (${event.ms} ms)`);
    if (event.type === 'ready') return void console.log(`${t}  ready: ${event.previewUrl}`);
    if (event.type === 'failed') throw new Error(`failed at ${event.step ?? 'start'}: ${event.reason}`);
  }
  throw new Error('the event stream closed before the session was ready');
}

main().catch((err) => {
  console.error(`preview: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
