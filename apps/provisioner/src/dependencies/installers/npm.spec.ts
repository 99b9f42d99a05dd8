import { installErrorOf } from './npm';

// npm 11's own `npm error` lines (captured from real installs), without the "npm error " prefix.
describe('installErrorOf', () => {
  it('names the package and keeps the registry message of a 404, not the boilerplate', () => {
    const error = installErrorOf(
      [
        'code E404',
        '404 Not Found - GET http://127.0.0.1:4873/velocity-no-such-package-9d1c - no such package available',
        '404',
        "404  'velocity-no-such-package-9d1c@^1.0.0' is not in this registry.",
        '404',
        '404 Note that you can also install from a',
        '404 tarball, folder, http url, or git url.',
        'A complete log of this run can be found in: /tmp/x/_logs/debug-0.log',
      ],
      1,
    );
    expect(error.message).toBe(
      "Not Found - GET http://127.0.0.1:4873/velocity-no-such-package-9d1c - no such package available 'velocity-no-such-package-9d1c@^1.0.0' is not in this registry. (E404)",
    );
    expect(error.code).toBe('E404');
    expect(error.retryable).toBe(false);
  });

  it('says which version was not found', () => {
    const error = installErrorOf(
      ['code ETARGET', 'notarget No matching version found for is-number@^99.0.0.', "notarget In most cases you or one of your dependencies are requesting a package version that doesn't exist."],
      1,
    );
    expect(error.message).toBe('No matching version found for is-number@^99.0.0. (ETARGET)');
    expect(error.retryable).toBe(false);
  });

  it('takes a network failure as worth another attempt', () => {
    const error = installErrorOf(['code ECONNREFUSED', 'syscall connect', 'errno ECONNREFUSED', 'FetchError: request to http://127.0.0.1:9/react failed, reason: connect ECONNREFUSED 127.0.0.1:9'], 1);
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/^connect ECONNREFUSED|FetchError: request to http:\/\/127\.0\.0\.1:9\/react failed/);
  });

  it('says how npm ended when it said nothing', () => {
    expect(installErrorOf([], 137).message).toBe('npm exited with code 137');
  });
});
