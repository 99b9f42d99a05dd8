import SlowestFilesReporter = require('../src/slowest-files-reporter');

/** A file's result as Jest hands it to reporters: only what the reporter reads. */
const resultOf = (testFilePath: string, start: number, end: number) => ({ testFilePath, perfStats: { start, end } });

describe('SlowestFilesReporter', () => {
  const reporter = new SlowestFilesReporter({ rootDir: '/repo' }, { count: 2 });
  const run = (testResults: ReturnType<typeof resultOf>[]) => {
    const write = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      reporter.onRunComplete(new Set(), { testResults });
      return write.mock.calls.map(([text]) => String(text)).join('');
    } finally {
      write.mockRestore();
    }
  };

  it('names the slowest files, longest first, with their durations and paths from the root', () => {
    const printed = run([
      resultOf('/repo/apps/a.spec.ts', 1_000, 1_500),
      resultOf('/repo/apps/b.int.spec.ts', 1_000, 13_250),
      resultOf('/repo/libs/c.spec.ts', 2_000, 4_000),
    ]);
    expect(printed).toBe('\nSlowest spec files:\n    12.3 s  apps/b.int.spec.ts\n     2.0 s  libs/c.spec.ts\n');
  });

  it('leaves out files that never ran (a suite that failed to load has no times), and says nothing for a run of one file', () => {
    expect(run([resultOf('/repo/a.spec.ts', 0, 0), resultOf('/repo/b.spec.ts', 5, 1_005)])).toBe('\nSlowest spec files:\n     1.0 s  b.spec.ts\n');
    expect(run([resultOf('/repo/b.spec.ts', 5, 1_005)])).toBe('');
  });
});
