// Types of slowest-files-reporter.js: what it reads of Jest's config and results.
declare namespace SlowestFilesReporter {
  interface FileResult {
    testFilePath: string;
    perfStats: { start: number; end: number };
  }
}

declare class SlowestFilesReporter {
  constructor(globalConfig: { rootDir: string }, options?: { count?: number });
  onRunComplete(contexts: unknown, results: { testResults: SlowestFilesReporter.FileResult[] }): void;
}

export = SlowestFilesReporter;
