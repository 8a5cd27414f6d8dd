/**
 * Turns off zod's code generation for the CLI process. A command parses a handful of values:
 * zod's per-schema code generation (a `new Function`, which V8 then compiles outside the bundle's
 * code cache) costs more than it saves in a process this short; services keep it. Imported
 * first by context.ts, before the kit's config schemas are made: an object schema reads the
 * setting when it is built, and zod probes for `new Function` at the first one unless jitless.
 */
import { config } from 'zod';

config({ jitless: true });
