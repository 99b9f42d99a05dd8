import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { PoolClaim } from '@velocity/contracts';
import { createClaimHandler } from '../src/pool-claim';

/**
 * The machine's claim endpoint: the files it is sent arrive exactly, binary ones
 * (base64) and text whose characters are split between the body's chunks.
 */
describe('pool claim handler', () => {
  let server: Server;
  let port: number;
  let received: PoolClaim[];

  beforeAll(async () => {
    const handle = createClaimHandler('claim-token', async (claim) => {
      received.push(claim);
      return { files: claim.files?.length ?? 0 };
    });
    server = createServer((req, res) => void handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  beforeEach(() => (received = []));
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** POSTs the body in chunks of `chunkBytes`, so multi-byte characters straddle chunk boundaries. */
  const post = (body: Buffer, chunkBytes: number) =>
    new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/__pool/claim', method: 'POST', headers: { authorization: 'Bearer claim-token' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      // Separate writes with a pause between them arrive as separate chunks.
      const writeFrom = (offset: number) => {
        if (offset >= body.length) return void req.end();
        req.write(body.subarray(offset, offset + chunkBytes));
        setTimeout(() => writeFrom(offset + chunkBytes), 2);
      };
      writeFrom(0);
    });

  it('takes text and binary files exactly, whatever the chunks', async () => {
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const files = [
      { path: 'src/App.jsx', content: 'export default () => "héllo ✓ 🚀";\n' },
      { path: 'src/assets/hero.png', content: everyByte.toString('base64'), encoding: 'base64' as const },
    ];
    const claim = { sessionId: randomUUID(), projectId: randomUUID(), filesUrl: 'http://127.0.0.1:1/v1/machines/x/files', machineToken: 't', files, filesCursor: '1-0' };
    expect(await post(Buffer.from(JSON.stringify(claim)), 7)).toBe(200);
    expect(received).toHaveLength(1);
    expect(received[0].files).toEqual(files);
    expect(Buffer.from(received[0].files![1].content, 'base64').equals(everyByte)).toBe(true);
  });
});
