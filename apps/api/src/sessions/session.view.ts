import type { PreviewSession } from '@velocity/shared';

/** A session as clients see it: no internal addresses. */
export function sessionView(session: PreviewSession) {
  return {
    id: session.id,
    projectId: session.projectId,
    status: session.status,
    tier: session.tier,
    previewUrl: session.status === 'active' ? session.previewUrl : null,
    expiresAt: session.expiresAt,
    endedAt: session.endedAt,
    errorMessage: session.errorMessage,
    errorStep: session.errorStep,
    createdAt: session.createdAt,
    updatedAt: session.updatedAt,
  };
}

/** A session whose job is queued but whose row the provisioner has not committed yet. */
export function queuedView(sessionId: string, projectId: string, tier: string, requestedAt: number) {
  return {
    id: sessionId,
    projectId,
    status: 'queued' as const,
    tier,
    previewUrl: null,
    expiresAt: null,
    endedAt: null,
    errorMessage: null,
    errorStep: null,
    createdAt: new Date(requestedAt).toISOString(),
    updatedAt: new Date(requestedAt).toISOString(),
  };
}
