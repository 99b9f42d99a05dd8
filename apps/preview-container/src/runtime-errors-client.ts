import { RUNTIME_ERRORS_PATH } from '@velocity/contracts';

/**
 * The script the machine adds to the preview's page, first in its `<head>` so it
 * sees the errors of every script after it. It reports to the machine, on the
 * page's own origin (`POST /__velocity/runtime-errors`, runtimeErrorReportSchema):
 * uncaught errors, unhandled rejections and scripts or stylesheets that failed to
 * load, at most 30 a page, batched for 100 ms. Vite's own error payloads (its
 * `vite:error` HMR event) are not sent back: the machine saw each one go out.
 * Plain ES2017 in a classic script: it runs before any module, in any browser.
 */
export const RUNTIME_ERRORS_CLIENT = `(function () {
  var url = ${JSON.stringify(RUNTIME_ERRORS_PATH)}, queue = [], left = 30, timer = 0;
  function text(value, max) { return String(value == null ? '' : value).slice(0, max); }
  function flush() {
    timer = 0;
    var errors = queue.splice(0, 10);
    if (errors.length) fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ errors: errors }), keepalive: true }).catch(function () {});
    if (queue.length) timer = setTimeout(flush, 100);
  }
  function report(error) {
    if (left <= 0) return;
    left--;
    var entry = { message: text(error.message, 1000) || 'unknown error' };
    if (error.source) entry.source = text(error.source, 1000);
    if (error.line > 0) entry.line = error.line;
    if (error.column > 0) entry.column = error.column;
    if (error.stack) entry.stack = text(error.stack, 3000);
    queue.push(entry);
    if (!timer) timer = setTimeout(flush, 100);
  }
  addEventListener('error', function (event) {
    var target = event.target;
    if (target && target !== window && (target.tagName === 'SCRIPT' || target.tagName === 'LINK')) {
      var src = target.src || target.href;
      return report({ message: 'Failed to load ' + src, source: src });
    }
    var error = event.error;
    report({ message: (error && error.message) || event.message, source: event.filename, line: event.lineno, column: event.colno, stack: error && error.stack });
  }, true);
  addEventListener('unhandledrejection', function (event) {
    var reason = event.reason;
    report({ message: 'Unhandled rejection: ' + ((reason && reason.message) || reason), stack: reason && reason.stack });
  });
})();`;

const TAG = `<script>${RUNTIME_ERRORS_CLIENT}</script>`;

/** The page with the client first in its `<head>` (or first of all, for a page without one). */
export function injectRuntimeErrorsClient(html: string): string {
  if (html.includes(TAG)) return html;
  const head = /<head(?:\s[^>]*)?>/i.exec(html);
  if (head) return html.slice(0, head.index + head[0].length) + TAG + html.slice(head.index + head[0].length);
  const doctype = /^\s*<!doctype[^>]*>/i.exec(html);
  const at = doctype ? doctype[0].length : 0;
  return html.slice(0, at) + TAG + html.slice(at);
}
