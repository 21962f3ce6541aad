import { expect } from 'chai';
import type { Knex } from 'knex';
import { ChangeInputError, Db, deriveColumn, zeroDowntime } from '../lib/index.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { startChecker, startLoop, type LoopWriter } from './support/column-writers.js';
import { expectCleanRun } from './support/writers.js';
import { expectExactRoundTrip, takeState } from './support/db-state.js';

const ROWS = 20_000;

const MIGRATION = `import { defineMigration, deriveColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [deriveColumn({
  table: 'users',
  column: { name: 'full_name', type: 'text' },
  from: ['first_name', 'last_name'],
  up: \`first_name || ' ' || last_name\`,
  down: { first_name: \`split_part(full_name, ' ', 1)\`, last_name: \`substr(full_name, strpos(full_name, ' ') + 1)\` },
  dropSources: true,
})] });
`;

describe('deriveColumn', function () {
  let url: string;
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ url, knex, db } = await openTestDatabase('col_derive'));
  });
  after(() => knex?.destroy());
  const q = async <R>(sql: string) => (await knex.raw<{ rows: R[] }>(sql)).rows;

  it('refuses dropSources without down, saying why, before touching anything', () => {
    expect(() =>
      deriveColumn({ table: 'users', column: { name: 'full_name', type: 'text' }, from: ['first_name', 'last_name'], up: `first_name || ' ' || last_name`, dropSources: true }),
    )
      .to.throw(ChangeInputError)
      .with.property('message')
      .that.matches(/dropSources needs down expressions.*derived one way only/);
    expect(() => deriveColumn({ table: 'users', column: { name: 'x', type: 'text' }, from: ['a', 'b'], up: 'a', down: { a: 'x' } })).to.throw(/one expression for each source/);
  });

  it('full_name from first_name + last_name: old writers (sources) and new writers (full_name) agree at every moment; contract drops the sources, down brings them back', async () => {
    await knex.raw(`CREATE TABLE users (id bigserial PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL, email text)`);
    await knex.raw(`INSERT INTO users (first_name, last_name, email) SELECT 'f' || g, 'l' || g, 'u' || g || '@x' FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE users');
    const project = tempProject('col-derive');
    project.write('2026.11.24T10.00.00.users-full-name.ts', MIGRATION);
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { batchSize: 2000, canary: false }, logger: silentLogger });
    let maxId = ROWS;
    const pick = () => 1 + Math.floor(Math.random() * maxId);
    const oldWriter = (label: string) =>
      startLoop(url, label, async (c, i) => {
        const r = Math.random();
        if (r < 0.3) await c.query(`INSERT INTO users (first_name, last_name) VALUES ($1, $2)`, [`${label}f${i}`, `${label}l${i}`]);
        else if (r < 0.55) await c.query(`UPDATE users SET first_name = $1 WHERE id = $2`, [`${label}F${i}`, pick()]);
        else if (r < 0.8) await c.query(`UPDATE users SET last_name = $1 WHERE id = $2`, [`${label}L${i}`, pick()]);
        else if (r < 0.92) await c.query(`UPDATE users SET email = $1 WHERE id = $2`, [`${label}${i}@x`, pick()]);
        else await c.query(`DELETE FROM users WHERE id = $1`, [pick()]);
      });
    const newWriter = (label: string) =>
      startLoop(url, label, async (c, i) => {
        const r = Math.random();
        if (r < 0.35) await c.query(`INSERT INTO users (full_name) VALUES ($1)`, [`${label}a${i} ${label}b${i}`]);
        else if (r < 0.8) await c.query(`UPDATE users SET full_name = $1 WHERE id = $2`, [`${label}A${i} ${label}B${i}`, pick()]);
        else if (r < 0.92) await c.query(`UPDATE users SET email = $1 WHERE id = $2`, [`${label}${i}@x`, pick()]);
        else await c.query(`DELETE FROM users WHERE id = $1`, [pick()]);
      });
    const checker = startChecker(async () => {
      const r = await q<{ bad: number; max: number }>(
        // Where both sides hold a value they must agree (the sources are NULL only in rows down has not restored yet).
        `SELECT count(*) FILTER (WHERE full_name IS NOT NULL AND first_name IS NOT NULL AND last_name IS NOT NULL
                                   AND full_name <> first_name || ' ' || last_name)::int AS bad, max(id)::int AS max FROM users`,
      );
      maxId = r[0]!.max;
      return r[0]!.bad > 0 ? `${r[0]!.bad} rows where full_name differs from first_name || ' ' || last_name` : null;
    }, /column "(full_name|first_name|last_name)" does not exist/);
    const all: LoopWriter[] = [];
    const start = async (make: (l: string) => Promise<LoopWriter>, labels: string[]) => {
      const ws = await Promise.all(labels.map(make));
      all.push(...ws);
      return ws;
    };
    const stop = (ws: LoopWriter[]) => Promise.all(ws.map((w) => w.stop()));
    const consistent = async () =>
      (await q<{ n: number }>(`SELECT count(*)::int AS n FROM users WHERE full_name IS DISTINCT FROM first_name || ' ' || last_name`))[0]!.n;
    let result: { checks: number; violations: string[] } | undefined;
    try {
      let olds = await start(oldWriter, ['old0', 'old1']);
      let news: LoopWriter[] = [];
      let started: Promise<unknown> | undefined;
      umzug.engine.subscribe((e) => {
        if (e.type === 'step' && e.status === 'done' && e.phase === 'expand' && !started) started = start(newWriter, ['new0', 'new1']).then((w) => (news = w));
      });
      expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['2026.11.24T10.00.00.users-full-name.ts:expand']);
      await started;
      expect(await consistent()).to.equal(0);
      // The old version is retired; the contract archives and drops the sources while the new version writes.
      await stop(olds);
      expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['2026.11.24T10.00.00.users-full-name.ts:contract']);
      const cols = (await q<{ column_name: string }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'users'`)).map((r) => r.column_name);
      expect(cols).to.have.members(['id', 'email', 'full_name']);
      await new Promise((r) => setTimeout(r, 300));
      // Rollback of the contract under the new writers: the sources come back, NOT NULL, in sync.
      await umzug.down();
      expect(await consistent()).to.equal(0);
      const nn = await q<{ attname: string; attnotnull: boolean }>(
        `SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname IN ('first_name', 'last_name') ORDER BY 1`,
      );
      expect(nn).to.deep.equal([
        { attname: 'first_name', attnotnull: true },
        { attname: 'last_name', attnotnull: true },
      ]);
      olds = await start(oldWriter, ['old2', 'old3']);
      await new Promise((r) => setTimeout(r, 300));
      await stop(news);
      await umzug.down();
      await umzug.up();
      await new Promise((r) => setTimeout(r, 300));
      expect(await consistent()).to.equal(0);
    } finally {
      await stop(all);
      result = await checker.stop({ atLeast: 10 });
      await umzug.close();
    }
    expectCleanRun(all, result, { minChecks: 10, minOps: 300 });
  });

  it('up → down → up with dropSources restores schema snapshot and per-row data exactly (NULL sources, index on both sources, CHECK, comment, grants)', async () => {
    await knex.raw(`DO $$ BEGIN CREATE ROLE zd_col_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    await knex.raw(`CREATE SCHEMA rt`);
    await knex.raw(`CREATE TABLE rt.people (id integer PRIMARY KEY, first_name text NOT NULL CONSTRAINT first_present CHECK (length(first_name) > 0),
                    last_name varchar(30) COLLATE "C" DEFAULT 'Doe', age int)`);
    await knex.raw(`CREATE INDEX people_names ON rt.people (last_name, first_name) WHERE age > 17`);
    await knex.raw(`COMMENT ON COLUMN rt.people.last_name IS 'family'`);
    await knex.raw(`GRANT SELECT (first_name, last_name) ON rt.people TO zd_col_reader`);
    await knex.raw(`INSERT INTO rt.people SELECT g, 'f' || g, CASE WHEN g % 4 = 0 THEN NULL WHEN g % 5 = 0 THEN 'two words' ELSE 'l' || g END, g % 90 FROM generate_series(1, 3000) g`);
    const project = tempProject('col-derive-rt');
    project.write(
      '001.derive.ts',
      `import { defineMigration, deriveColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [deriveColumn({
  table: { schema: 'rt', name: 'people' },
  column: { name: 'display', type: 'text' },
  from: ['first_name', 'last_name'],
  up: \`concat_ws(' ', first_name, last_name)\`,
  down: { first_name: \`split_part(display, ' ', 1)\`, last_name: \`CASE WHEN strpos(display, ' ') > 0 THEN substr(display, strpos(display, ' ') + 1) END\` },
  dropSources: true,
})] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    // 'two words' last names do not survive split_part: the archive, not `down`, gives them back.
    await expectExactRoundTrip(umzug, () => takeState(db, ['rt']), {
      contracted: (contracted) =>
        expect(Object.keys(contracted.schema.objects).filter((k) => k.startsWith('column rt.people.'))).to.have.members([
          'column rt.people.id',
          'column rt.people.age',
          'column rt.people.display',
        ]),
    });
    await umzug.close();
  });
});
