/** The merge alone; holding Vite's messages during a batch is checked on a real preview in Chromium (apps/e2e/test/file-batches.spec.ts). */
import { mergeHeld } from '../src/hmr-batch';

const update = (path: string, acceptedPath = path, timestamp = 1) => ({ type: 'js-update', path, acceptedPath, timestamp });

describe('mergeHeld', () => {
  it('makes one update with each module once (the latest), or one full reload if any asked for one', () => {
    expect(mergeHeld([])).toBeNull();
    expect(
      mergeHeld([
        { type: 'update', updates: [update('/src/App.jsx', '/src/App.jsx', 1)] },
        { type: 'update', updates: [update('/src/App.jsx', '/src/App.jsx', 2), update('/src/a.css')] },
      ]),
    ).toEqual({ type: 'update', updates: [update('/src/App.jsx', '/src/App.jsx', 2), update('/src/a.css')] });
    expect(mergeHeld([{ type: 'update', updates: [update('/a.js')] }, { type: 'full-reload' }])).toEqual({ type: 'full-reload' });
    expect(mergeHeld([{ type: 'prune' }])).toBeNull();
  });
});
