import { expect } from 'chai';
import { runPreflight } from '../lib/engine/preflight.js';
import type { PreflightCheck } from '../lib/migration.js';
import { useTestDatabase } from './support/pg.js';

describe('preflight: read in page ranges, one short statement each', function () {
  this.timeout(60_000);
  const t = useTestDatabase('preflight_chunks', async ({ knex }) => {
    await knex.raw(`CREATE TABLE "p; drop table x" (id int PRIMARY KEY, code text, pad text)`);
    // 20 000 rows, every 1000th not a number: the failing rows lie in many page ranges.
    await knex.raw(`INSERT INTO "p; drop table x" SELECT g, CASE WHEN g % 1000 = 0 THEN 'x' || g ELSE g::text END, repeat('p', 80) FROM generate_series(1, 20000) g`);
  });

  const table = { schema: 'public', name: 'p; drop table x' };
  const keys = [{ name: 'id', type: 'integer' }];
  const check = (expression: string, where?: string): PreflightCheck => ({ table, expression, ...(where ? { where } : {}), what: 'the cast', fix: 'clean them' });

  it('counts every failing row across all ranges and keeps five samples, each range its own statement', async () => {
    const ranges: [number, number | null][] = [];
    const { knex, db } = t;
    const r = await runPreflight(db, check(`CAST(code AS integer)`), keys, { chunkPages: 16, onChunk: (f, t) => ranges.push([f, t]) });
    expect(r.failing).to.equal(20);
    expect(r.samples).to.have.length(5);
    expect(r.samples[0]!.error).to.match(/invalid input syntax for type integer/);
    const pages = Number((await knex.raw<{ rows: { n: string }[] }>(`SELECT pg_relation_size('"p; drop table x"') / 8192 AS n`)).rows[0]!.n);
    expect(ranges.length).to.equal(Math.ceil(pages / 16));
    // Contiguous, from page 0, the last one open-ended (two connections read them on an idle server, so they end in
    // either order).
    ranges.sort((a, b) => a[0] - b[0]);
    ranges.forEach(([f, t], i) => {
      expect(f).to.equal(i * 16);
      expect(t).to.equal(i === ranges.length - 1 ? null : f + 16);
    });
  });

  it('a clean table passes; a `where` limits the rows; an expression that cannot run is raised as it is', async () => {
    const { db } = t;
    expect((await runPreflight(db, check(`length(code)`), keys, { chunkPages: 16 })).failing).to.equal(0);
    expect((await runPreflight(db, check(`CAST(code AS integer)`, `id <= 5000`), keys, { chunkPages: 16 })).failing).to.equal(5);
    // An expression that cannot run at all fails even on a range with no row to evaluate: that error is raised as it is.
    let err: unknown;
    try {
      await runPreflight(db, check(`CAST(nope AS integer)`, `id <= 300`), keys, { chunkPages: 16 });
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.match(/column "nope" does not exist/);
  });
});
