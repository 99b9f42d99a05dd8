import { createMachineToken, createRoutesToken, verifyMachineToken, verifyRoutesToken } from './machine-token';

const SECRET = 'a-secret-of-at-least-some-length';
const SESSION = { sessionId: '2f1c6a47-7a8e-4c35-9d3e-7b1f2f1f0a01', projectId: '6b0f3b36-6f7e-4b8a-9b55-2d1c7a9e0c02' };
const ROUTE_ID = '0c9d8e7f-1a2b-4c3d-8e9f-0a1b2c3d4e5f';

describe('machine tokens', () => {
  it('a session token verifies as its session and project, not as a routes token', () => {
    const token = createMachineToken(SESSION, SECRET, 60);
    expect(verifyMachineToken(token, SECRET)).toMatchObject(SESSION);
    expect(verifyRoutesToken(token, SECRET)).toBeNull();
  });

  it('a routes token opens the route lookup only: it is no session token', () => {
    const token = createRoutesToken(ROUTE_ID, SECRET, 60);
    expect(verifyRoutesToken(token, SECRET)).toMatchObject({ scope: 'routes', routeId: ROUTE_ID });
    expect(verifyMachineToken(token, SECRET)).toBeNull();
  });

  it('refuses a token signed with another secret, an expired one and a tampered one', () => {
    expect(verifyRoutesToken(createRoutesToken(ROUTE_ID, 'another-secret', 60), SECRET)).toBeNull();
    expect(verifyRoutesToken(createRoutesToken(ROUTE_ID, SECRET, -1), SECRET)).toBeNull();
    expect(verifyMachineToken(createMachineToken(SESSION, SECRET, -1), SECRET)).toBeNull();
    const [, signature] = createRoutesToken(ROUTE_ID, SECRET, 60).split('.');
    const forged = Buffer.from(JSON.stringify({ ...SESSION, exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url');
    expect(verifyMachineToken(`${forged}.${signature}`, SECRET)).toBeNull();
    expect(verifyMachineToken(`${forged}.${signature}.x`, SECRET)).toBeNull();
  });
});
