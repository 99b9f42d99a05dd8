import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * The claim of a warm-pool machine: `POST /__pool/claim` with the machine's
 * claim token names the session it now serves. It answers once the session's
 * files are in place (and Vite sees them), so the provisioner can verify at once.
 */
export const CLAIM_PATH = '/__pool/claim';

export const claimSchema = z.object({
  sessionId: z.uuid(),
  projectId: z.uuid(),
  filesUrl: z.url({ protocol: /^https?$/ }),
  machineToken: z.string().min(1),
});
export type Claim = z.infer<typeof claimSchema>;

export function createClaimHandler(claimToken: string, onClaim: (claim: Claim) => Promise<{ files: number }>) {
  let claimed: string | null = null;
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    if (!req.url?.startsWith(CLAIM_PATH)) return false;
    if (req.method !== 'POST') return send(res, 405, { error: 'POST only' });
    if (!tokenMatches(req.headers.authorization, claimToken)) return send(res, 401, { error: 'A valid claim token is required' });
    const parsed = claimSchema.safeParse(await readJson(req).catch(() => null));
    if (!parsed.success) return send(res, 400, { error: `Invalid claim: ${parsed.error.issues[0].path.join('.')} ${parsed.error.issues[0].message}` });
    // A machine serves one session in its life; the same claim again (a retried request) is answered as before.
    if (claimed && claimed !== parsed.data.sessionId) return send(res, 409, { error: 'Already claimed', sessionId: claimed });
    claimed = parsed.data.sessionId;
    try {
      const result = await onClaim(parsed.data);
      return send(res, 200, { claimed: true, sessionId: claimed, ...result });
    } catch (err) {
      return send(res, 502, { error: `Claim failed: ${(err as Error).message}` });
    }
  };
}

function tokenMatches(header: string | undefined, expected: string): boolean {
  const given = Buffer.from(header?.match(/^Bearer (\S+)$/)?.[1] ?? '');
  const want = Buffer.from(expected);
  return given.length === want.length && timingSafeEqual(given, want);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 64 * 1024) throw new Error('claim body too large');
  }
  return JSON.parse(body);
}

function send(res: ServerResponse, status: number, body: unknown): true {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
  return true;
}
