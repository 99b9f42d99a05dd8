import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { sendJson } from '@velocity/runtime';
import { POOL_CLAIM_MAX_BYTES, POOL_CLAIM_PATH, poolClaimSchema, type PoolClaim } from '@velocity/contracts';

/**
 * The machine's side of a claim (the contract is in libs/contracts/src/pool-contract.ts).
 * It answers once the session's files are in place (and Vite sees them), so the
 * provisioner can verify at once.
 */
export function createClaimHandler(claimToken: string, onClaim: (claim: PoolClaim) => Promise<{ files: number }>) {
  let claimed: string | null = null;
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    if (!req.url?.startsWith(POOL_CLAIM_PATH)) return false;
    if (req.method !== 'POST') return send(res, 405, { error: 'POST only' });
    if (!tokenMatches(req.headers.authorization, claimToken)) return send(res, 401, { error: 'A valid claim token is required' });
    const body = await readJson(req).catch((err: Error) => err);
    if (body instanceof BodyTooLargeError) return send(res, 413, { error: `Claim larger than ${POOL_CLAIM_MAX_BYTES} bytes` });
    const parsed = poolClaimSchema.safeParse(body instanceof Error ? null : body);
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

/** Decoded once, whole: a character split between two chunks would not survive decoding each chunk alone. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req) {
    bytes += (chunk as Buffer).length;
    if (bytes > POOL_CLAIM_MAX_BYTES) throw new BodyTooLargeError();
    chunks.push(chunk as Buffer);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

class BodyTooLargeError extends Error {}

function send(res: ServerResponse, status: number, body: unknown): true {
  sendJson(res, status, body);
  return true;
}
