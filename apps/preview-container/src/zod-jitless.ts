import { z } from 'zod';

/**
 * Imported first by main.ts. A machine checks each schema a few times in its
 * life (its claim, each file change): zod compiling a fast path for a schema on
 * its first use costs more than it saves here, and it would fall on the claim.
 * zod reads this setting when a schema is built, so it must run before any
 * module that builds one.
 */
z.config({ jitless: true });
