import { randomBytes } from 'node:crypto';
import { DEMO_PROJECT_ID, PROVISION_STEPS, sleep } from '@velocity/contracts';
import { sampleValue, samples } from '@velocity/testing';
import { eventsUntilTerminal, startSystem, type RunningSystem } from '../src/system';

/**
 * One real session through the whole system, seen the way an operator sees it:
 * the provisioner's step histograms get a sample for every step and time to
 * ready one; the api's gauges show the session and its jobs; one request id
 * follows the session from POST (api logs) through provisioning (provisioner logs).
 */
const TOKEN = randomBytes(24).toString('base64url');
const auth = { authorization: `Bearer ${TOKEN}` };

describe('observability of a real session', () => {
  let system: RunningSystem;

  beforeAll(async () => {
    system = await startSystem({ OPERATOR_TOKEN: TOKEN });
  }, 60_000);

  afterAll(async () => {
    await system?.stop();
  });

  it('metrics and one request id from POST to ready', async () => {
    const requestId = `obs-${randomBytes(8).toString('hex')}`;
    const res = await fetch(`${system.baseUrl}/v1/sessions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': requestId },
      body: JSON.stringify({ projectId: DEMO_PROJECT_ID }),
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-request-id')).toBe(requestId);
    const { sessionId } = (await res.json()) as { sessionId: string };
    const { events } = await eventsUntilTerminal(system.baseUrl, sessionId);
    expect(events.at(-1)?.type).toBe('ready');

    // The provisioner's histograms: a sample for every step, and time to ready. The job completes
    // just after `ready` is stored (the processor returns then), so wait for that first.
    const scrape = async () => (await fetch(`${system.ops.provisioner}/metrics`, { headers: auth })).text();
    let provisioner = await scrape();
    const completed = () => samples(provisioner, 'vp_worker_jobs_total', { queue: 'sessions', name: 'provision-session', outcome: 'completed' }).length > 0;
    for (const deadline = Date.now() + 10_000; !completed() && Date.now() < deadline; provisioner = await scrape()) await sleep(50);
    for (const step of PROVISION_STEPS) {
      expect({ step, count: sampleValue(provisioner, 'vp_provision_step_seconds_count', { step, app: 'provisioner' }) }).toEqual({ step, count: 1 });
      expect(sampleValue(provisioner, 'vp_provision_step_seconds_sum', { step })).toBeGreaterThan(0);
      expect(sampleValue(provisioner, 'vp_provision_step_seconds_bucket', { step, le: '+Inf' })).toBe(1);
    }
    expect(sampleValue(provisioner, 'vp_time_to_ready_seconds_count')).toBe(1);
    const ttr = sampleValue(provisioner, 'vp_time_to_ready_seconds_sum');
    expect(ttr).toBeGreaterThan(0);
    expect(ttr).toBeLessThan(60);
    expect(samples(provisioner, 'vp_provision_failures_total')).toEqual([]);
    expect(sampleValue(provisioner, 'vp_worker_jobs_total', { queue: 'sessions', name: 'provision-session', outcome: 'completed' })).toBe(1);

    // The api's gauges: the live session, its completed job and its delayed expiry job.
    const api = await (await fetch(`${system.baseUrl}/metrics`, { headers: auth })).text();
    expect(sampleValue(api, 'vp_sessions', { status: 'active' })).toBe(1);
    expect(sampleValue(api, 'vp_sessions', { status: 'queued' })).toBe(0);
    expect(sampleValue(api, 'vp_queue_jobs', { queue: 'sessions', state: 'completed' })).toBe(1);
    expect(sampleValue(api, 'vp_queue_jobs', { queue: 'sessions', state: 'waiting' })).toBe(0);
    expect(sampleValue(api, 'vp_queue_jobs', { queue: 'cleanup', state: 'delayed' })).toBeGreaterThanOrEqual(1);
    expect(sampleValue(api, 'vp_http_request_seconds_count', { method: 'POST', route: '/v1/sessions', status: '202' })).toBe(1);

    // The cleanup worker's own.
    const cleanup = await fetch(`${system.ops.cleanup}/metrics`, { headers: auth });
    expect(cleanup.status).toBe(200);

    // One request id from the POST to ready: the api's lines of that request, the provisioner's of that job.
    const lines = (app: 'api' | 'provisioner') =>
      system.output[app].flatMap((l) => parsed(l)).filter((l) => l.requestId === requestId);
    await waitFor(() => lines('provisioner').some((l) => l.msg === 'session ready'));
    const api1 = lines('api');
    expect(api1).toContainEqual(expect.objectContaining({ msg: 'request', method: 'POST', path: '/v1/sessions', status: 202, ms: expect.any(Number) }));
    expect(api1).toContainEqual(expect.objectContaining({ msg: 'session requested', sessionId }));
    const prov = lines('provisioner');
    expect(prov.filter((l) => l.msg === 'step done').map((l) => l.step)).toEqual([...PROVISION_STEPS]);
    for (const line of prov) expect(line).toMatchObject({ app: 'provisioner', sessionId, jobId: sessionId, requestId });
    expect(prov).toContainEqual(expect.objectContaining({ msg: 'session ready' }));

    // The SSE request that read the events logged its session id too.
    expect(system.output.api.some((l) => l.includes('"msg":"request"') && l.includes(`"path":"/v1/sessions/${sessionId}/events"`) && l.includes(`"sessionId":"${sessionId}"`))).toBe(true);
  }, 90_000);
});

/** A whole JSON log line, or nothing (output chunks may split a line). */
function parsed(line: string): Record<string, unknown>[] {
  try {
    return [JSON.parse(line)];
  } catch {
    return [];
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for a log line`);
    await sleep(50);
  }
}
