import { createRequire } from 'node:module';
import path from 'node:path';
import type { Knex } from 'knex';

/** A Knex instance from the user's own `knex` package (a peer dependency). */
export function createKnex(config: Knex.Config): Knex {
  // knex is a peer dependency and CommonJS: resolve it from the user's project, else from beside the running script
  // (the `umzug` bin inside node_modules), the same way from the ESM and the CJS build.
  const bases = [path.join(process.cwd(), 'noop.js'), ...(process.argv[1] ? [process.argv[1]] : [])];
  let knexFactory: (((c: Knex.Config) => Knex) & { knex?: (c: Knex.Config) => Knex }) | undefined;
  for (const base of bases) {
    try {
      knexFactory = createRequire(base)('knex') as typeof knexFactory;
      break;
    } catch {
      // try the next place
    }
  }
  if (!knexFactory) throw new Error('cannot find the `knex` package (a peer dependency): run `npm install knex pg` in your project.');
  return (knexFactory.knex ?? knexFactory)(config);
}
