import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PREVIEW_CONTAINER_ENTRY, PREVIEW_CONTAINER_NODE_FLAGS } from './config';

describe('PREVIEW_CONTAINER_NODE_FLAGS', () => {
  it("are the flags of the preview container image's command, before its entry", () => {
    const dockerfile = readFileSync(join(__dirname, '../../../Dockerfile'), 'utf8');
    const stage = dockerfile.slice(dockerfile.indexOf('AS preview-container\n'));
    const command = /^CMD (\[.*\])$/m.exec(stage)?.[1];
    expect(command && JSON.parse(command)).toEqual(['node', ...PREVIEW_CONTAINER_NODE_FLAGS, DEFAULT_PREVIEW_CONTAINER_ENTRY]);
  });
});
