// Jest reporter: at the end of a run, the spec files that took longest, with
// their durations (setup included), so the slow ones are seen where they cost.
// Plain CommonJS: Jest loads reporters without transforming them.
const path = require('node:path');

class SlowestFilesReporter {
  /** `options.count`: how many files to name (10 unless told). */
  constructor(globalConfig, options = {}) {
    this.rootDir = globalConfig.rootDir;
    this.count = options.count ?? 10;
  }

  onRunComplete(_contexts, results) {
    // A run of one file says its time already.
    if (results.testResults.length < 2) return;
    const files = slowestFiles(results.testResults, this.count);
    const lines = files.map(({ filePath, ms }) => `  ${seconds(ms).padStart(8)}  ${path.relative(this.rootDir, filePath)}`);
    // stderr, like Jest's own reporters: stdout may carry `--json`.
    process.stderr.write(`\nSlowest spec files:\n${lines.join('\n')}\n`);
  }
}

/** The `count` longest-running files of a run, longest first. */
function slowestFiles(testResults, count) {
  return testResults
    .map((result) => ({ filePath: result.testFilePath, ms: result.perfStats.end - result.perfStats.start }))
    .filter(({ ms }) => Number.isFinite(ms) && ms > 0)
    .sort((a, b) => b.ms - a.ms)
    .slice(0, count);
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

module.exports = SlowestFilesReporter;
