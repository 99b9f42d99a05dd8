/**
 * Tests ask preview origins (`http://<routeId>.localhost:<port>/`) with `fetch`,
 * as a browser would. Browsers resolve every `*.localhost` name to loopback;
 * Node's resolver here knows only `localhost`, and Node's own fetch takes no
 * resolver. So every test file's `fetch` is undici's (the same library Node's
 * is built on), resolving names as the system's own HTTP client does.
 */
import { Agent, fetch as undiciFetch } from 'undici';
import { lookupLocalhostNames } from '@velocity/runtime';

const dispatcher = new Agent({ connect: { lookup: lookupLocalhostNames as never } });

globalThis.fetch = ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
  undiciFetch(input as never, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch;
