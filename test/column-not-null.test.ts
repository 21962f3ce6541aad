import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime } from '../lib/index.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { startChecker, startLoop, type LoopWriter } from './support/column-writers.js';
import { expectCleanRun } from './support/writers.js';
import { expectExactRoundTrip, takeState } from './support/db-state.js';

const ROWS = 20_000;

describe('setNotNull', function () {
  let url: string;
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ url, knex, db } = await openTestDatabase('col_not_null'));
  });
  after(() => knex?.destroy());
  const q = async <R>(sql: string) => (await knex.raw<{ rows: R[] }>(sql)).rows;
  const attnotnull = async (table: string, column: string) =>
    (await q<{ nn: boolean }>(`SELECT attnotnull AS nn FROM pg_attribute WHERE attrelid = '${table}'::regclass AND attname = '${column}'`))[0]!.nn;

  it('with a default: NULLs backfilled, CHECK NOT VALID → VALIDATE → SET NOT NULL, while writers that never send the column keep inserting', async () => {
    await knex.raw(`CREATE TABLE tickets (id bigserial PRIMARY KEY, status text, note text)`);
    await knex.raw(`INSERT INTO tickets (status, note) SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE 'open' END, 'n' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE tickets');
    const project = tempProject('col-nn');
    project.write(
      '001.status-not-null.ts',
      `import { defineMigration, setNotNull } from 'umzug-zero-downtime';
export default defineMigration({ changes: [setNotNull({ table: 'tickets', column: 'status', default: 'new' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { batchSize: 2000, canary: false }, logger: silentLogger });
    let maxId = ROWS;
    const pick = () => 1 + Math.floor(Math.random() * maxId);
    // The old version never sends status on insert (it relied on NULL); the new one always does.
    const writer = (label: string, sendsStatus: boolean) =>
      startLoop(url, label, async (c, i) => {
        const r = Math.random();
        if (r < 0.35) {
          if (sendsStatus) await c.query(`INSERT INTO tickets (status, note) VALUES ($1, $2)`, ['open', `${label}-${i}`]);
          else await c.query(`INSERT INTO tickets (note) VALUES ($1)`, [`${label}-${i}`]);
        } else if (r < 0.6) await c.query(`UPDATE tickets SET status = $1 WHERE id = $2`, ['closed', pick()]);
        else if (r < 0.9) await c.query(`UPDATE tickets SET note = $1 WHERE id = $2`, [`${label}-${i}`, pick()]);
        else await c.query(`DELETE FROM tickets WHERE id = $1`, [pick()]);
      });
    let phase: 'before' | 'expanded' = 'before';
    const checker = startChecker(async () => {
      const r = await q<{ nulls: number; max: number }>(`SELECT count(*) FILTER (WHERE status IS NULL)::int AS nulls, max(id)::int AS max FROM tickets`);
      maxId = r[0]!.max;
      return phase === 'expanded' && r[0]!.nulls > 0 ? `${r[0]!.nulls} NULL statuses after expand` : null;
    });
    const writers: LoopWriter[] = [await writer('old0', false), await writer('old1', false), await writer('new0', true)];
    let result;
    try {
      await umzug.up();
      phase = 'expanded';
      const check = await q<{ def: string; validated: boolean }>(`SELECT pg_get_constraintdef(oid) AS def, convalidated AS validated FROM pg_constraint WHERE conrelid = 'tickets'::regclass AND contype = 'c'`);
      expect(check).to.deep.equal([{ def: 'CHECK ((status IS NOT NULL))', validated: true }]);
      await umzug.up();
      expect(await attnotnull('tickets', 'status')).to.equal(true);
      expect(await q(`SELECT conname FROM pg_constraint WHERE conrelid = 'tickets'::regclass AND contype = 'c'`)).to.deep.equal([]);
      await umzug.down();
      expect(await attnotnull('tickets', 'status')).to.equal(false);
      await umzug.up();
      expect(await attnotnull('tickets', 'status')).to.equal(true);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
      result = await checker.stop({ atLeast: 5 });
      await umzug.close();
    }
    expectCleanRun(writers, result, { minChecks: 5, minOps: 200 });
  });

  it('up → down → up: the NULLs come back exactly, schema identical', async () => {
    await knex.raw(`CREATE SCHEMA rt`);
    await knex.raw(`CREATE TABLE rt.items (id int PRIMARY KEY, color text DEFAULT 'red', size int)`);
    await knex.raw(`INSERT INTO rt.items SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE 'c' || g END, CASE WHEN g % 5 = 0 THEN NULL ELSE g END FROM generate_series(1, 3000) g`);
    const project = tempProject('col-nn-rt');
    project.write(
      '002.items-not-null.ts',
      `import { defineMigration, setNotNull } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  setNotNull({ table: { schema: 'rt', name: 'items' }, column: 'color', default: 'grey' }),
  setNotNull({ table: { schema: 'rt', name: 'items' }, column: 'size', defaultSql: '0 + 1' }),
] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    await expectExactRoundTrip(umzug, () => takeState(db, ['rt']), {
      contracted: async (contracted) => {
        expect(contracted.schema.objects['column rt.items.color']).to.equal(`text NOT NULL DEFAULT 'grey'::text`);
        expect(contracted.schema.objects['column rt.items.size']).to.equal(`integer NOT NULL DEFAULT (0 + 1)`);
        expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM rt.items WHERE color = 'grey'`))[0]!.n).to.equal(750);
      },
    });
    await umzug.close();
  });

  it('without a default, a NULL row stops the validation with the explanation; filling the row and running up again finishes it', async () => {
    await knex.raw(`CREATE TABLE notes (id int PRIMARY KEY, body text)`);
    await knex.raw(`INSERT INTO notes VALUES (1, 'a'), (2, NULL), (3, 'c')`);
    const project = tempProject('col-nn-refuse');
    project.write(
      '003.notes-body-not-null.ts',
      `import { defineMigration, setNotNull } from 'umzug-zero-downtime';
export default defineMigration({ changes: [setNotNull({ table: 'notes', column: 'body' })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    const err = await umzug.up().then(
      () => null,
      (e: Error) => e,
    );
    expect(String(err?.message)).to.match(/public\.notes\.body has 1 NULL values.*cannot be validated.*Fill those rows.*run up again/);
    // A NOT VALID CHECK left behind would fail the old version's updates of the NULL row: the expand was undone.
    expect(String(err?.message)).to.match(/undone automatically/);
    expect((await knex.raw<{ rows: unknown[] }>(`SELECT 1 FROM pg_constraint WHERE conrelid = 'notes'::regclass AND contype = 'c'`)).rows).to.deep.equal([]);
    await knex.raw(`UPDATE notes SET body = 'b' WHERE id = 2`);
    await umzug.up();
    await umzug.up();
    expect(await attnotnull('notes', 'body')).to.equal(true);
    await umzug.close();
  });
});
