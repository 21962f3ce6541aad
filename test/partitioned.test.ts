// Partitioned tables (issue 19): indexes and unique constraints built one partition at a time (ON ONLY, each
// partition's index CONCURRENTLY, ATTACH), and the column swaps whose indexes are rebuilt that way, under writers that
// insert into and update every partition, up → down → up exact; a build killed in mid-partition and resumed; `plan`
// listing each partition's step; and the refusals, before anything runs, of what cannot be done safely there.
import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Knex } from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { buildPlan } from '../lib/ops/plan.js';
import { partitionIndexName } from '../lib/postgres/partitions.js';
import { schemaSnapshot } from '../lib/postgres/snapshot.js';
import { retryDeadlock, runLifecycle, type LifecycleCase } from './support/lifecycle.js';
import { pgClient, silentLogger, useTestDatabase } from './support/pg.js';
import { tempProject } from './support/project.js';
import { spawnUp } from './support/backfill-spawn.js';


/**
 * Range by day, two partitions and a default one (named to break any unquoted SQL); the 2025 partition is itself
 * partitioned by list of region, with a default of its own. 4 leaves, 5 partitions.
 */
const EVENTS = `CREATE TABLE events (id bigserial, created_at date NOT NULL, region text NOT NULL, name text, n integer NOT NULL DEFAULT 0,
  PRIMARY KEY (id, created_at, region)) PARTITION BY RANGE (created_at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY LIST (region);
CREATE TABLE events_2025_eu PARTITION OF events_2025 FOR VALUES IN ('eu');
CREATE TABLE events_2025_rest PARTITION OF events_2025 DEFAULT;
CREATE TABLE "p; drop table x" PARTITION OF events DEFAULT;
INSERT INTO events (created_at, region, name) SELECT date '2024-01-01' + (g % 1000), CASE WHEN g % 3 = 0 THEN 'eu' ELSE 'us' END, 'n' || g FROM generate_series(1, 2000) g;`;

const LEAVES = ['events_2024', 'events_2025_eu', 'events_2025_rest', 'p; drop table x'];

const pick = (maxId: number) => 1 + Math.floor(Math.random() * maxId);
/** A day in 2024, 2025 or 2026 (the default partition) and a region: every leaf gets rows. */
const somewhere = (i: number): [string, string] => [`${2024 + (i % 3)}-0${1 + (i % 9)}-1${i % 10}`, (i >> 1) % 2 ? 'eu' : 'us'];
const writes = (tag: string) => async (c: pg.Client, i: number, maxId: number) => {
  if (i % 2) await c.query(`INSERT INTO events (created_at, region, name) VALUES ($1, $2, $3)`, [...somewhere(i), `${tag}-${randomUUID()}`]);
  else await c.query(`UPDATE events SET name = $1, n = n + 1 WHERE id = $2`, [`${tag}-${randomUUID()}`, pick(maxId)]);
};

/** Each leaf's indexes attached to `parent` (by name), and whether `parent` is valid. */
async function attached(knex: Knex, parent: string): Promise<{ valid: boolean; leaves: string[] }> {
  const v = await knex.raw<{ rows: { valid: boolean }[] }>(`SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass(?)`, [parent]);
  const leaves = await knex.raw<{ rows: { t: string }[] }>(
    `SELECT x.indrelid::regclass::text AS t FROM pg_partition_tree(to_regclass(?)) p JOIN pg_index x ON x.indexrelid = p.relid
      WHERE p.isleaf AND x.indisvalid ORDER BY 1`,
    [parent],
  );
  return { valid: v.rows[0]?.valid ?? false, leaves: leaves.rows.map((r) => r.t.replace(/^"|"$/g, '')).sort() };
}

/**
 * Runs `up` for the project in a process of its own (test/support/up-child.ts) and kills it (SIGKILL) once `reached`
 * says so, then ends the CONCURRENTLY build it left in the server (without its client it would wait on until
 * lock_timeout; this database's only: another test run on the same server builds too). Its INVALID index stays
 * behind, as after a crash.
 */
async function killUpWhen(knex: Knex, url: string, dir: string, reached: () => Promise<boolean>, what: string): Promise<void> {
  const child = spawnUp(url, dir, 500, 0);
  let seen = false;
  for (let i = 0; i < 400 && !seen; i++) {
    seen = await reached();
    if (!seen) await new Promise((res) => setTimeout(res, 50));
  }
  expect(seen, `${what} never started: ${child.output()}`).to.equal(true);
  child.kill('SIGKILL');
  await child.exited;
  await knex.raw(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'CREATE INDEX CONCURRENTLY%' AND pid <> pg_backend_pid() AND datname = current_database()`);
}

/**
 * An addIndex on events whose change has started (its catalog read and stored) when the partition events_2030
 * appears, before its first step runs: the parent's ON ONLY index does not reach it, and no step was planned for it.
 */
async function indexStartedBeforeLatePartition(knex: Knex, prefix: string): Promise<{ dir: string; umzug: ReturnType<typeof zeroDowntime> }> {
  const project = tempProject(prefix);
  project.write('001.events-n.ts', `import { defineMigration, addIndex } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [addIndex({ table: 'events', columns: ['n'] })] });\n`);
  const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, logger: silentLogger });
  const entry = (await umzug.entries()).find((e) => e.name === '001.events-n.ts:expand')!;
  const started = await umzug.engine.prepare(entry.name, 0, entry.changes[0]!);
  await umzug.engine.state.startChange(entry.name, 0, entry.changes[0]!.kind, started.description.summary, started.snapshot);
  await knex.raw(`CREATE TABLE events_2030 PARTITION OF events FOR VALUES FROM ('2030-01-01') TO ('2031-01-01')`);
  return { dir: project.dir, umzug };
}

describe('partitioned tables: every index built one partition at a time, under writers in every partition', function () {
  const CASES: Record<string, LifecycleCase> = {
    addIndex: {
      setup: EVENTS,
      uses: ['addIndex'],
      changes: `addIndex({ table: 'events', columns: ['name'], include: ['n'], where: 'n >= 0' })`,
      oldApp: writes('o'),
      newApp: writes('n'),
      idOf: 'events',
      rows: 2000,
      afterExpand: async (knex) => {
        // The old version wrote into every partition while the indexes were built.
        const written = await knex.raw<{ rows: { t: string }[] }>(`SELECT DISTINCT tableoid::regclass::text AS t FROM events WHERE name LIKE 'o-%'`);
        expect(written.rows.map((r) => r.t.replace(/^"|"$/g, '')).sort()).to.deep.equal([...LEAVES].sort());
        expect(await attached(knex, 'events_name_idx')).to.deep.equal({ valid: true, leaves: [...LEAVES].sort() });
        await knex.raw(`SELECT bt_index_check(x.indexrelid, true) FROM pg_partition_tree('events_name_idx') p JOIN pg_index x ON x.indexrelid = p.relid WHERE p.isleaf`);
      },
    },
    addUnique: {
      setup: EVENTS,
      uses: ['addUnique'],
      changes: `addUnique({ table: 'events', columns: ['name', 'created_at', 'region'] })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) {
          await c.query(`INSERT INTO events (created_at, region, name) VALUES ($1, $2, $3) ON CONFLICT (name, created_at, region) DO NOTHING`, [...somewhere(i), `n-${randomUUID()}`]);
        } else await c.query(`UPDATE events SET name = $1 WHERE id = $2`, [`n-${randomUUID()}`, pick(maxId)]);
      },
      idOf: 'events',
      rows: 2000,
      afterExpand: async (knex) => {
        const con = await knex.raw<{ rows: { conname: string; t: string; parent: string | null }[] }>(
          `SELECT co.conname, co.conrelid::regclass::text AS t, (SELECT p.conname FROM pg_constraint p WHERE p.oid = co.conparentid) AS parent
             FROM pg_constraint co WHERE co.contype = 'u' AND co.connamespace = 'public'::regnamespace ORDER BY 2`,
        );
        // The parent's constraint adopted every partition's (and the sub-partitioned partition's own): nothing was built twice.
        expect(con.rows.map((r) => [r.t.replace(/^"|"$/g, ''), r.parent === null ? null : 'attached']).sort()).to.deep.equal([
          ['events', null], ['events_2024', 'attached'], ['events_2025', 'attached'], ['events_2025_eu', 'attached'], ['events_2025_rest', 'attached'], ['p; drop table x', 'attached'],
        ]);
        expect((await attached(knex, 'events_name_created_at_region_key')).valid).to.equal(true);
      },
    },
    dropIndex: {
      // PostgreSQL names the partitions' indexes itself here; down must give them back under those names.
      setup: `${EVENTS}\nCREATE INDEX events_region_idx ON events (region, n);`,
      uses: ['dropIndex'],
      changes: `dropIndex({ table: 'events', name: 'events_region_idx' })`,
      oldApp: writes('o'),
      newApp: writes('n'),
      idOf: 'events',
      rows: 2000,
    },
    renameColumn: {
      // The column's index is rebuilt on the new column partition by partition; the swap gives every partition's
      // index its original name back.
      setup: `${EVENTS}\nCREATE INDEX events_name_idx ON events (name) WHERE n >= 0;\nALTER TABLE events ADD CONSTRAINT events_name_len CHECK (length(name) < 100);`,
      uses: ['renameColumn'],
      changes: `renameColumn({ table: 'events', from: 'name', to: 'title' })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO events (created_at, region, title) VALUES ($1, $2, $3)`, [...somewhere(i), `n-${i}`]);
        else await c.query(`UPDATE events SET title = $1 WHERE id = $2`, [`n-${i}`, pick(maxId)]);
      },
      invariant: `SELECT 'row ' || id || ': name and title differ' AS problem FROM events WHERE to_jsonb(events) ->> 'title' IS NOT NULL AND to_jsonb(events) ->> 'name' IS NOT NULL AND to_jsonb(events) ->> 'name' <> to_jsonb(events) ->> 'title'`,
      idOf: 'events',
      rows: 2000,
      afterContract: async (knex) => {
        expect(await attached(knex, 'events_name_idx')).to.deep.equal({ valid: true, leaves: [...LEAVES].sort() });
        const names = await knex.raw<{ rows: { relname: string }[] }>(`SELECT relname FROM pg_class WHERE relname LIKE '%name_idx' ORDER BY 1`);
        expect(names.rows.map((r) => r.relname)).to.deep.equal(['events_2024_name_idx', 'events_2025_eu_name_idx', 'events_2025_name_idx', 'events_2025_rest_name_idx', 'events_name_idx', 'p; drop table x_name_idx']);
      },
    },
    changeColumnType: {
      setup: `${EVENTS}\nCREATE INDEX events_region_idx ON events (region, n);\nALTER TABLE events ADD CONSTRAINT events_n_sane CHECK (n >= 0);`,
      uses: ['changeColumnType'],
      changes: `changeColumnType({ table: 'events', column: 'n', type: 'bigint' })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO events (created_at, region, name, n) VALUES ($1, $2, $3, $4)`, [...somewhere(i), `n-${i}`, 1000 + (i % 100)]);
        else await c.query(`UPDATE events SET n = n + 1 WHERE id = $1`, [pick(maxId)]);
      },
      invariant: `SELECT 'row ' || id || ': n and n__new differ' AS problem FROM events WHERE (to_jsonb(events) ->> 'n__new') <> n::text`,
      idOf: 'events',
      rows: 2000,
    },
    deriveColumn: {
      // Contract drops the source, and its index with it; down puts both back (the index partition by partition).
      setup: `${EVENTS}\nCREATE INDEX events_name_idx ON events (name);`,
      uses: ['deriveColumn'],
      changes: `deriveColumn({ table: 'events', column: { name: 'label', type: 'text' }, from: ['name'], up: "'<' || name || '>'", down: { name: 'substr(label, 2, length(label) - 2)' }, dropSources: true })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO events (created_at, region, label) VALUES ($1, $2, $3)`, [...somewhere(i), `<n-${i}>`]);
        else await c.query(`UPDATE events SET label = $1 WHERE id = $2`, [`<n-${i}>`, pick(maxId)]);
      },
      invariant: `SELECT 'row ' || id || ': label is stale' AS problem FROM events WHERE to_jsonb(events) ? 'name' AND to_jsonb(events) ->> 'label' <> '<' || (to_jsonb(events) ->> 'name') || '>'`,
      idOf: 'events',
      rows: 2000,
    },
    dropColumn: {
      // Down puts the column back and builds its index again partition by partition, under the original names.
      setup: `${EVENTS}\nCREATE INDEX events_name_idx ON events (name);`,
      uses: ['dropColumn'],
      changes: `dropColumn({ table: 'events', column: 'name' })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO events (created_at, region) VALUES ($1, $2)`, [...somewhere(i)]);
        else await c.query(`UPDATE events SET n = n + 1 WHERE id = $1`, [pick(maxId)]);
      },
      idOf: 'events',
      rows: 2000,
    },
  };
  for (const [name, c] of Object.entries(CASES)) {
    it(`${name}: expand → contract → undo → again, exact, writers in every partition`, async () => {
      const report = await runLifecycle(`part_${name}`, { ...c, setup: `CREATE EXTENSION IF NOT EXISTS amcheck;\n${c.setup}` });
      expect(report.ops).to.be.greaterThan(20);
    });
  }
});

/** Every leaf's own constraint `name` is validated (inherited from the table's). */
async function validatedOnEveryLeaf(knex: Knex, name: string): Promise<string[]> {
  const r = await knex.raw<{ rows: { t: string }[] }>(
    `SELECT co.conrelid::regclass::text AS t FROM pg_constraint co JOIN pg_partition_tree('events') p ON p.relid = co.conrelid
      WHERE co.conname = ? AND co.convalidated AND p.isleaf ORDER BY 1`,
    [name],
  );
  return r.rows.map((x) => x.t.replace(/^"|"$/g, '')).sort();
}

/** The leaves where `column` of events is NOT NULL in the catalog. */
async function notNullLeaves(knex: Knex, column: string): Promise<string[]> {
  const r = await knex.raw<{ rows: { t: string }[] }>(
    `SELECT a.attrelid::regclass::text AS t FROM pg_attribute a JOIN pg_partition_tree('events') p ON p.relid = a.attrelid
      WHERE p.isleaf AND a.attname = ? AND a.attnotnull ORDER BY 1`,
    [column],
  );
  return r.rows.map((x) => x.t.replace(/^"|"$/g, '')).sort();
}

/** event_notes: partitioned like events (a 2024 partition and a default one), a row for every other event. */
const EVENT_NOTES = `CREATE TABLE event_notes (id bigint, created_at date NOT NULL, region text NOT NULL, note text,
  PRIMARY KEY (id, created_at, region)) PARTITION BY RANGE (created_at);
CREATE TABLE event_notes_2024 PARTITION OF event_notes FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE "event_notes; rest" PARTITION OF event_notes DEFAULT;
INSERT INTO event_notes SELECT id, created_at, region, 'note ' || id FROM events WHERE id % 2 = 0;`;

describe('partitioned tables: the other change types, under writers in every partition', function () {
  const CASES: Record<string, LifecycleCase> = {
    addColumn: {
      setup: EVENTS,
      uses: ['addColumn'],
      changes: `addColumn({ table: 'events', column: { name: 'score', type: 'integer', default: 7 } })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO events (created_at, region, name, score) VALUES ($1, $2, $3, $4)`, [...somewhere(i), `n-${i}`, i]);
        else await c.query(`UPDATE events SET score = score + 1 WHERE id = $1`, [pick(maxId)]);
      },
      idOf: 'events',
      rows: 2000,
      afterExpand: async (knex) => {
        // A constant default: no partition was rewritten, and every old row reads it.
        const r = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM events WHERE score IS NULL`);
        expect(r.rows[0]!.n).to.equal(0);
      },
    },
    addColumnNotNullBackfill: {
      setup: EVENTS,
      uses: ['addColumn'],
      changes: `addColumn({ table: 'events', column: { name: 'slug', type: 'text', nullable: false, default: '' }, backfill: "'s-' || id" })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO events (created_at, region, name, slug) VALUES ($1, $2, $3, $4)`, [...somewhere(i), `n-${i}`, `n-${i}`]);
        else await c.query(`UPDATE events SET slug = $1 WHERE id = $2`, [`u-${i}`, pick(maxId)]);
      },
      idOf: 'events',
      rows: 2000,
      afterExpand: async (knex) => {
        expect(await notNullLeaves(knex, 'slug')).to.deep.equal([...LEAVES].sort());
        const r = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM events WHERE id <= 2000 AND slug NOT LIKE 's-%' AND slug NOT LIKE 'u-%'`);
        expect(r.rows[0]!.n, 'every existing row backfilled').to.equal(0);
        const left = await knex.raw<{ rows: unknown[] }>(`SELECT 1 FROM pg_constraint WHERE conname LIKE 'zd_nn_%'`);
        expect(left.rows).to.deep.equal([]);
      },
    },
    addColumnDefaultSql: {
      setup: `CREATE EXTENSION IF NOT EXISTS pgcrypto;\n${EVENTS}`,
      uses: ['addColumn'],
      changes: `addColumn({ table: 'events', column: { name: 'ref', type: 'uuid', defaultSql: 'gen_random_uuid()' } })`,
      oldApp: writes('o'),
      newApp: writes('n'),
      idOf: 'events',
      rows: 2000,
      afterExpand: async (knex) => {
        const r = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM events WHERE ref IS NULL`);
        expect(r.rows[0]!.n).to.equal(0);
      },
    },
    setNotNull: {
      // NULL names in every leaf; the backfill fills them, down puts the NULLs back.
      setup: `${EVENTS}\nUPDATE events SET name = NULL WHERE id % 5 = 0;`,
      uses: ['setNotNull'],
      changes: `setNotNull({ table: 'events', column: 'name', default: 'unnamed' })`,
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO events (created_at, region) VALUES ($1, $2)`, [...somewhere(i)]);
        else await c.query(`UPDATE events SET name = $1 WHERE id = $2`, [`n-${i}`, pick(maxId)]);
      },
      idOf: 'events',
      rows: 2000,
      afterContract: async (knex) => {
        expect(await notNullLeaves(knex, 'name')).to.deep.equal([...LEAVES].sort());
      },
      afterUndo: async (knex) => {
        const r = await knex.raw<{ rows: { t: string }[] }>(`SELECT DISTINCT tableoid::regclass::text AS t FROM events WHERE name IS NULL`);
        expect(r.rows.map((x) => x.t.replace(/^"|"$/g, '')).sort()).to.deep.equal([...LEAVES].sort());
      },
    },
    addCheck: {
      setup: EVENTS,
      uses: ['addCheck'],
      changes: `addCheck({ table: 'events', name: 'events_n_sane', check: 'n >= 0' })`,
      oldApp: writes('o'),
      newApp: writes('n'),
      idOf: 'events',
      rows: 2000,
      afterExpand: async (knex) => {
        expect(await validatedOnEveryLeaf(knex, 'events_n_sane')).to.deep.equal([...LEAVES].sort());
      },
    },
    addForeignKeyToPartitioned: {
      // A plain table referencing the partitioned one (PostgreSQL 12+): NOT VALID, then VALIDATE, as between plain tables.
      setup: `${EVENTS}\nCREATE TABLE tickets (id bigserial PRIMARY KEY, event_id bigint, event_at date, event_region text);
INSERT INTO tickets (event_id, event_at, event_region) SELECT id, created_at, region FROM events WHERE id % 3 = 0;`,
      uses: ['addForeignKey'],
      changes: `addForeignKey({ table: 'tickets', columns: ['event_id', 'event_at', 'event_region'], references: { table: 'events', columns: ['id', 'created_at', 'region'] }, onDelete: 'CASCADE' })`,
      oldApp: async (c, i, maxId) => {
        if (i % 3) await writes('o')(c, i, maxId);
        else await c.query(`INSERT INTO tickets (event_id, event_at, event_region) SELECT id, created_at, region FROM events WHERE id = $1`, [pick(maxId)]);
      },
      newApp: async (c, i, maxId) => {
        if (i % 3) await c.query(`DELETE FROM events WHERE id = $1`, [pick(maxId)]);
        else await c.query(`INSERT INTO tickets (event_id, event_at, event_region) SELECT id, created_at, region FROM events WHERE id = $1`, [pick(maxId)]);
      },
      invariant: `SELECT 'ticket ' || t.id || ' has no event' AS problem FROM tickets t WHERE NOT EXISTS (SELECT 1 FROM events e WHERE (e.id, e.created_at, e.region) = (t.event_id, t.event_at, t.event_region))
        AND EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'tickets_event_id_event_at_event_region_fkey' AND convalidated)`,
      idOf: 'events',
      rows: 2000,
    },
    renameTable: {
      setup: EVENTS,
      uses: ['renameTable'],
      changes: `renameTable({ from: 'events', to: 'happenings' })`,
      // Through the view: inserts routed to every partition, updates of every partition.
      oldApp: writes('o'),
      newApp: async (c, i, maxId) => {
        if (i % 2) await c.query(`INSERT INTO happenings (created_at, region, name) VALUES ($1, $2, $3)`, [...somewhere(i), `n-${i}`]);
        else await c.query(`UPDATE happenings SET name = $1, n = n + 1 WHERE id = $2`, [`n-${i}`, pick(maxId)]);
      },
      rows: 2000,
      afterExpand: async (knex) => {
        const written = await knex.raw<{ rows: { t: string }[] }>(`SELECT DISTINCT tableoid::regclass::text AS t FROM happenings WHERE name LIKE 'o-%'`);
        expect(written.rows.map((r) => r.t.replace(/^"|"$/g, '')).sort()).to.deep.equal([...LEAVES].sort());
      },
    },
    dropTable: {
      setup: `${EVENTS}\nCREATE TABLE keep (id int PRIMARY KEY);`,
      uses: ['dropTable'],
      changes: `dropTable({ table: 'events' })`,
      oldApp: writes('o'),
      newApp: async (c, i) => void (await c.query(`INSERT INTO keep VALUES ($1) ON CONFLICT DO NOTHING`, [i])),
      idOf: 'events',
      rows: 2000,
      // As autovacuum does: the leaves analyzed, never the partitioned table itself (its reltuples stays -1).
      afterExpand: async (knex) => {
        for (const leaf of LEAVES) await knex.raw(`ANALYZE ??`, [leaf]);
      },
      afterContract: async (knex) => {
        // The partitions went with the table: nothing of it is left where the application looks.
        const left = await knex.raw<{ rows: { relname: string }[] }>(
          `SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'i', 'I') AND c.relname NOT LIKE 'keep%' ORDER BY 1`,
        );
        expect(left.rows).to.deep.equal([]);
        const moved = await knex.raw<{ rows: { n: number; rows: number }[] }>(
          `SELECT count(*)::int AS n, sum((xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %s', p.relid), false, true, '')))[1]::text::int)::int AS rows
             FROM pg_class c JOIN pg_partition_tree(c.oid) p ON p.isleaf
            WHERE c.relnamespace = 'zero_downtime'::regnamespace AND c.relkind = 'p' AND c.relispartition = false`,
        );
        expect(moved.rows[0]!.n).to.equal(4);
        expect(moved.rows[0]!.rows).to.be.greaterThan(2000);
        // `umzug purge` lists the archive with its leaves' rows (the partitioned table's own reltuples is -1).
        const registered = await knex.raw<{ rows: { rows: string | null }[] }>(`SELECT rows::text FROM zero_downtime.column_archives WHERE source_table = 'public.events'`);
        expect(Number(registered.rows[0]?.rows)).to.be.greaterThan(1000);
      },
    },
    splitTable: {
      setup: EVENTS,
      uses: ['splitTable'],
      changes: `splitTable({ from: 'events', to: 'event_names', columns: ['name'], key: ['id', 'created_at', 'region'] })`,
      // The two versions lock a row of each table in opposite orders (through the sync triggers), as on a plain
      // table, and PostgreSQL may pick either as a deadlock's victim: both retry it, as applications do.
      oldApp: retryDeadlock(writes('o')),
      // Two statements, as an application writes them: in one (a data-modifying CTE) the sync trigger of events,
      // an AFTER trigger, would fire at the end of the statement with the row as inserted, without the name.
      newApp: retryDeadlock(async (c, i, maxId) => {
        if (i % 2) {
          await c.query('BEGIN');
          const e = (await c.query<{ id: string; created_at: string; region: string }>(`INSERT INTO events (created_at, region) VALUES ($1, $2) RETURNING id, created_at::text, region`, [...somewhere(i)])).rows[0]!;
          await c.query(`INSERT INTO event_names (id, created_at, region, name) VALUES ($1, $2, $3, $4) ON CONFLICT (id, created_at, region) DO UPDATE SET name = excluded.name`, [
            e.id, e.created_at, e.region, `n-${i}`,
          ]);
          await c.query('COMMIT');
        } else {
          await c.query(
            `INSERT INTO event_names (id, created_at, region, name) SELECT id, created_at, region, $1 FROM events WHERE id = $2
             ON CONFLICT (id, created_at, region) DO UPDATE SET name = excluded.name`,
            [`n-${i}`, pick(maxId)],
          );
        }
      }),
      invariant: `SELECT 'row ' || e.id || ': name differs' AS problem FROM events e JOIN event_names x USING (id, created_at, region) WHERE (to_jsonb(e) ? 'name') AND to_jsonb(e) ->> 'name' IS DISTINCT FROM x.name`,
      invariantMayFail: /relation "event_names" does not exist/,
      idOf: 'events',
      rows: 2000,
    },
    mergeTables: {
      setup: `${EVENTS}\n${EVENT_NOTES}`,
      uses: ['mergeTables'],
      changes: `mergeTables({ from: ['events', 'event_notes'], into: 'events_all', key: ['id', 'created_at', 'region'] })`,
      // The versions lock a row's two halves in opposite orders through the sync triggers (README: deadlocks).
      oldApp: retryDeadlock(async (c, i, maxId) => {
        if (i % 3 === 0) await writes('o')(c, i, maxId);
        else await c.query(`UPDATE event_notes SET note = $1 WHERE id = $2`, [`o-${i}`, pick(maxId)]);
      }),
      newApp: retryDeadlock(async (c, i, maxId) => void (await c.query(`UPDATE events_all SET note = $1, name = $1 WHERE id = $2`, [`n-${i}`, pick(maxId)]))),
      invariant: `SELECT 'row ' || a.id || ': note differs' AS problem FROM events_all a JOIN event_notes p USING (id, created_at, region) WHERE a.note IS DISTINCT FROM p.note`,
      invariantMayFail: /relation "(events_all|event_notes)" does not exist/,
      idOf: 'events',
      rows: 2000,
      afterContract: async (knex) => {
        // Both sources were archived with their partitions: only the merged table is left.
        const left = await knex.raw<{ rows: { relname: string }[] }>(`SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1`);
        expect(left.rows.map((r) => r.relname)).to.deep.equal(['events_all']);
      },
    },
  };
  for (const [name, c] of Object.entries(CASES)) {
    it(`${name}: expand → contract → undo → again, exact, writers in every partition`, async () => {
      const report = await runLifecycle(`part_${name}`, c);
      expect(report.ops).to.be.greaterThan(20);
    });
  }
});

describe('partitioned tables: a build killed in mid-partition resumes at that partition', function () {
  const t = useTestDatabase('part_resume', async ({ knex }) => {
    await knex.raw(EVENTS);
  });

  it('keeps the partitions done, drops the INVALID leftover of the killed build and builds it again', async () => {
    const project = tempProject('part-resume');
    project.write(
      '001.events-name.ts',
      `import { defineMigration, addIndex } from 'umzug-zero-downtime';
export default defineMigration({ changes: [addIndex({ table: 'events', columns: ['name'] })] });
`,
    );
    // A transaction holding a write in the second leaf makes that partition's build wait (CREATE INDEX CONCURRENTLY
    // waits for every transaction that writes the table); the first leaf is done by then.
    const holder = await pgClient(t.url, 'holder');
    await holder.query('BEGIN');
    await holder.query(`UPDATE events_2025_eu SET n = n + 1 WHERE id = (SELECT min(id) FROM events_2025_eu)`);
    const leftover = `zd_pi_events_2025_eu_events_name_idx`;
    const invalidLeftover = async () =>
      (await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE starts_with(c.relname, ?) AND NOT i.indisvalid`, [leftover])).rows[0]!.n > 0;
    await killUpWhen(t.knex, t.url, project.dir, invalidLeftover, "the second partition's build");
    await holder.query('COMMIT');
    await holder.end();
    const done = (await t.knex.raw<{ rows: { step_id: string }[] }>(`SELECT step_id FROM zero_downtime.steps ORDER BY 1`)).rows.map((r) => r.step_id);
    expect(done).to.include.members(['create-index', 'partition:public.events_2024:build', 'partition:public.events_2024:attach']);
    expect(done).to.not.include('partition:public.events_2025_eu:build');
    const invalid = await t.knex.raw<{ rows: { relname: string }[] }>(`SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid AND c.relkind = 'i'`);
    expect(invalid.rows.map((r) => r.relname)).to.have.length(1);

    const first = `SELECT c.oid::int AS oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'events_2024'::regclass AND starts_with(c.relname, 'zd_pi_')`;
    const builtBefore = (await t.knex.raw<{ rows: { oid: number }[] }>(first)).rows;
    expect(builtBefore).to.have.length(1);
    const umzug = zeroDowntime({ knex: t.knex, cwd: project.dir, contract: { after: 0 }, logger: silentLogger });
    const steps: { step: string; status: string }[] = [];
    umzug.engine.subscribe((e) => {
      if (e.type === 'step') steps.push({ step: e.step, status: e.status });
    });
    await umzug.up();
    // The partitions finished before the kill are skipped; the killed one starts again from its leftover.
    const skipped = steps.filter((s) => s.status === 'skipped').map((s) => s.step);
    expect(skipped[0]).to.match(/^create index events_name_idx on only public\.events/);
    expect(skipped.slice(1)).to.satisfy((xs: string[]) => xs.some((x) => /^build index zd_pi_events_2024_\w+ on partition public\.events_2024/.test(x)));
    expect(skipped.join('\n')).to.not.match(/events_2025_eu concurrently/);
    expect(await attached(t.knex, 'events_name_idx')).to.deep.equal({ valid: true, leaves: [...LEAVES].sort() });
    // The first partition's index is the one built before the kill, not built again.
    expect((await t.knex.raw<{ rows: { oid: number }[] }>(first)).rows).to.deep.equal(builtBefore);
    const after = await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM pg_index WHERE NOT indisvalid`);
    expect(after.rows[0]!.n).to.equal(0);
    await umzug.down();
    const left = await t.knex.raw<{ rows: { relname: string }[] }>(`SELECT c.relname FROM pg_class c WHERE c.relname LIKE '%name_idx%'`);
    expect(left.rows).to.deep.equal([]);
    await umzug.close();
  });
});

describe('partitioned tables: a partition created after the change read the catalog, before the parent index', function () {
  const t = useTestDatabase('part_late', async ({ knex }) => {
    await knex.raw(EVENTS);
  });

  it('check-index builds its index concurrently and attaches it, under the name the route gives a partition\'s index', async () => {
    const { umzug } = await indexStartedBeforeLatePartition(t.knex, 'part-late');
    await umzug.up();
    expect(await attached(t.knex, 'events_n_idx')).to.deep.equal({ valid: true, leaves: [...LEAVES, 'events_2030'].sort() });
    const late = await t.knex.raw<{ rows: { relname: string }[] }>(`SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = 'events_2030'::regclass AND c.relname LIKE 'zd_pi_%'`);
    expect(late.rows.map((r) => r.relname)).to.deep.equal([partitionIndexName('events_n_idx', { schema: 'public', name: 'events_2030' })]);
    await umzug.down();
    const left = await t.knex.raw<{ rows: { relname: string }[] }>(`SELECT relname FROM pg_class WHERE relname LIKE 'zd_pi_%' OR relname = 'events_n_idx'`);
    expect(left.rows).to.deep.equal([]);
    await umzug.close();
  });
});

describe('partitioned tables: a catch-up build killed, then down', function () {
  const t = useTestDatabase('part_late_kill', async ({ knex }) => {
    await knex.raw(EVENTS);
  });

  it("down drops the unattached index the killed run's catch-up left on a partition the change did not read", async () => {
    const { dir, umzug } = await indexStartedBeforeLatePartition(t.knex, 'part-late-kill');
    // A transaction writing the new partition makes its catch-up build wait (CREATE INDEX CONCURRENTLY waits for
    // every transaction writing the table), and the run is killed there.
    const holder = await pgClient(t.url, 'holder');
    await holder.query('BEGIN');
    await holder.query(`INSERT INTO events_2030 (created_at, region, name) VALUES ('2030-05-01', 'eu', 'held')`);
    const leftover = partitionIndexName('events_n_idx', { schema: 'public', name: 'events_2030' });
    const building = async () => (await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM pg_class WHERE relname = ?`, [leftover])).rows[0]!.n > 0;
    await killUpWhen(t.knex, t.url, dir, building, 'the catch-up build');
    await holder.query('COMMIT');
    await holder.end();
    const attachedTo = `SELECT count(*)::int AS n FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.relname = ? AND i.inhrelid IS NULL`;
    expect((await t.knex.raw<{ rows: { n: number }[] }>(attachedTo, [leftover])).rows[0]!.n, 'left unattached by the killed run').to.equal(1);

    await umzug.down(); // undoes the half-applied expand
    const left = await t.knex.raw<{ rows: { relname: string }[] }>(`SELECT relname FROM pg_class WHERE relname LIKE 'zd_pi_%' OR relname = 'events_n_idx'`);
    expect(left.rows).to.deep.equal([]);
    // And up then runs from scratch and builds every partition's index, the late one's too.
    await umzug.up();
    expect(await attached(t.knex, 'events_n_idx')).to.deep.equal({ valid: true, leaves: [...LEAVES, 'events_2030'].sort() });
    await umzug.close();
  });
});

describe('partitioned tables: dropTable when a partition appeared after the change read the catalog', function () {
  const t = useTestDatabase('part_late_drop', async ({ knex }) => {
    await knex.raw(EVENTS);
  });

  it('the contract takes it along into the archive, with its rows; down brings it back; up and down again are exact', async () => {
    const project = tempProject('part-late-drop');
    project.write('001.drop-events.ts', `import { defineMigration, dropTable } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [dropTable({ table: 'events' })] });\n`);
    const umzug = zeroDowntime({ knex: t.knex, cwd: project.dir, contract: { after: 0 }, logger: silentLogger });
    await umzug.up(); // expand: nothing to do, but the catalog is read (and kept) now
    await t.knex.raw(`CREATE TABLE events_2030 PARTITION OF events_2025 FOR VALUES IN ('apac')`);
    await t.knex.raw(`INSERT INTO events (region, created_at, name) VALUES ('apac', '2025-06-01', 'late row')`);
    const rowsBefore = Number((await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM events`)).rows[0]!.n);
    const schema = async () => t.db.withConnection((c) => schemaSnapshot(c, ['public', 'zero_downtime']));
    const tree = async () =>
      Number((await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM pg_partition_tree('public.events') WHERE relid::regclass::text NOT LIKE 'zero_downtime.%'`)).rows[0]!.n);
    await umzug.up(); // contract: the late partition goes into the archive with the rest
    const left = await t.knex.raw<{ rows: unknown[] }>(`SELECT 1 FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')`);
    expect(left.rows, 'nothing of events left in public').to.deep.equal([]);
    const registry = await t.knex.raw<{ rows: { archive: string; rows: string }[] }>(`SELECT archive, rows FROM zero_downtime.column_archives WHERE kind = 'drop-table'`);
    expect(registry.rows).to.have.length(1);
    const archive = `zero_downtime.${registry.rows[0]!.archive}`;
    expect(Number((await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM ${archive}`)).rows[0]!.n), 'every row archived, the late one too').to.equal(rowsBefore);
    const archivedLeaves = await t.knex.raw<{ rows: unknown[] }>(`SELECT 1 FROM pg_partition_tree(?::regclass) WHERE isleaf`, [archive]);
    expect(archivedLeaves.rows, 'the 4 leaves read by the change and the late one').to.have.length(5);
    await umzug.down();
    expect(await tree(), 'the table and its 6 partitions back in public, events_2030 among them').to.equal(7);
    expect(Number((await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM events`)).rows[0]!.n), 'every row back').to.equal(rowsBefore);
    const restored = await schema();
    await umzug.up();
    await umzug.down();
    expect(await schema(), 'down → up → down exact').to.deep.equal(restored);
    await umzug.close();
  });
});

describe('partitioned tables: refused before anything runs, naming the partition and why', function () {
  const t = useTestDatabase('part_refuse', async ({ knex }) => {
    await knex.raw(EVENTS);
    await knex.raw(`CREATE TABLE refd (id bigint PRIMARY KEY)`);
  });

  const refusal = async (changes: string, uses: string): Promise<string> => {
    const project = tempProject('part-refuse');
    project.write('001.x.ts', `import { defineMigration, ${uses} } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [${changes}] });\n`);
    const umzug = zeroDowntime({ knex: t.knex, cwd: project.dir, contract: { after: 0 }, logger: silentLogger });
    const before = await schema();
    const error = await umzug.up().then(() => null, (e: Error) => e);
    await umzug.close();
    expect(error, changes).to.not.equal(null);
    expect(await schema(), 'nothing changed').to.deep.equal(before);
    const state = await t.knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM zero_downtime.changes`).catch(() => ({ rows: [{ n: 0 }] }));
    expect(state.rows[0]!.n).to.equal(0);
    return String((error as { cause?: Error }).cause?.message ?? error!.message);
  };
  const schema = async () => t.db.withConnection((c) => schemaSnapshot(c, ['public']));

  it('a unique index without the partition key, naming the key', async () => {
    const m = await refusal(`addUnique({ table: 'events', columns: ['name'] })`, 'addUnique');
    expect(m).to.match(/public\.events is partitioned by \(created_at\)/).and.match(/created_at is not among \(name\)/).and.match(/Nothing was changed/);
  });

  it('a unique index without a sub-partition\'s key, naming that partition and its key', async () => {
    const m = await refusal(`addIndex({ table: 'events', columns: ['name', 'created_at'], unique: true })`, 'addIndex');
    expect(m).to.match(/its partition public\.events_2025 is partitioned by \(region\)/).and.match(/region is not among \(name, created_at\)/);
  });

  it('a foreign partition, naming it', async function () {
    const fdw = await t.knex.raw<{ rows: unknown[] }>(`SELECT 1 FROM pg_available_extensions WHERE name = 'file_fdw'`);
    if (fdw.rows.length === 0) this.skip();
    await t.knex.raw(`CREATE EXTENSION IF NOT EXISTS file_fdw; CREATE SERVER IF NOT EXISTS files FOREIGN DATA WRAPPER file_fdw;
      CREATE TABLE logs (id bigint, at int) PARTITION BY RANGE (at);
      CREATE TABLE logs_1 PARTITION OF logs FOR VALUES FROM (0) TO (10);
      CREATE FOREIGN TABLE "logs; old" PARTITION OF logs FOR VALUES FROM (10) TO (20) SERVER files OPTIONS (filename '/dev/null')`);
    const m = await refusal(`addIndex({ table: 'logs', columns: ['id'] })`, 'addIndex');
    expect(m).to.match(/the partition public\.logs; old is a foreign table, which cannot have an index/);
    const d = await refusal(`dropIndex({ table: 'events', name: 'events_pkey' })`, 'dropIndex');
    expect(d).to.match(/implements the constraint/);
  });

  it('a foreign key NOT VALID on a partitioned table before PostgreSQL 18', async function () {
    const v = Number((await t.knex.raw<{ rows: { v: string }[] }>(`SELECT current_setting('server_version_num') AS v`)).rows[0]!.v);
    if (v >= 180000) this.skip();
    // What the refusal stands for: the server itself refuses the NOT VALID form.
    const server = await t.knex.raw(`ALTER TABLE events ADD CONSTRAINT x FOREIGN KEY (n) REFERENCES refd (id) NOT VALID`).then(() => '', (e: Error) => e.message);
    expect(server).to.match(/cannot add NOT VALID foreign key on partitioned table "events"/);
    const m = await refusal(`addForeignKey({ table: 'events', columns: ['n'], references: { table: 'refd', columns: ['id'] } })`, 'addForeignKey');
    expect(m).to.equal(
      `addForeignKey: public.events (partitions public.events_2024, public.events_2025, public.events_2025_eu, public.events_2025_rest, … 5 in all) is partitioned, and PostgreSQL ${Math.floor(v / 10000)} cannot add a foreign key NOT VALID to a partitioned table (18 can), so it would be checked against every row under a lock that stops writes to all partitions. Nothing was changed. ` +
        'On PostgreSQL 18 this change runs as on a plain table. Before 18: add the foreign key NOT VALID and VALIDATE it on each partition (sql()), then on the table, which adopts them.',
    );
  });

  it('createTable asked for a partitioned table', async () => {
    const m = await refusal(`createTable({ table: 'logs2', columns: [{ name: 'id', type: 'bigint' }, { name: 'at', type: 'date' }], primaryKey: ['id', 'at'], partitionBy: 'RANGE (at)' } as never)`, 'createTable');
    expect(m).to.match(/^createTable: partitionBy: createTable cannot make a partitioned table yet\. Nothing was changed\. Create it with sql\(\)/);
  });

  it('a column swap of a partition key column, or of a column under a unique constraint', async () => {
    const k = await refusal(`changeColumnType({ table: 'events', column: 'created_at', type: 'timestamptz' })`, 'changeColumnType');
    expect(k).to.match(/^changeColumnType: public\.events \(partitions public\.events_2024, public\.events_2025, public\.events_2025_eu, public\.events_2025_rest, … 5 in all\) is partitioned, and created_at has what cannot be carried over safely there: its place in the partition key of public\.events \(created_at\)/);
    await t.knex.raw(`ALTER TABLE events ADD CONSTRAINT events_name_uniq UNIQUE (name, created_at, region)`);
    const u = await refusal(`renameColumn({ table: 'events', from: 'name', to: 'title' })`, 'renameColumn');
    expect(u).to.match(/name has what cannot be carried over safely there: the unique constraint events_name_uniq/).and.match(/Nothing was changed/);
  });
});

describe('partitioned tables: plan lists every partition as a step with its lock', function () {
  const t = useTestDatabase('part_plan', async ({ knex }) => {
    await knex.raw(EVENTS);
  });

  it('addIndex: the ON ONLY index, each leaf built CONCURRENTLY and attached, the sub-partitioned partition ON ONLY and attached', async () => {
    const project = tempProject('part-plan');
    project.write('001.x.ts', `import { defineMigration, addIndex } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [addIndex({ table: 'events', columns: ['name'] })] });\n`);
    const umzug = zeroDowntime({ knex: t.knex, cwd: project.dir, contract: { after: 0 }, logger: silentLogger });
    const plan = await buildPlan(umzug);
    await umzug.close();
    const steps = plan.phases[0]!.changes[0]!.steps;
    // Non-transactional steps: the lock PostgreSQL documents; the others measured in the rolled-back transaction, or,
    // where an earlier step's index is missing there, requested by the statement (PostgreSQL's parser).
    const lock = (s: (typeof steps)[number]) => {
      const x = s.statements[s.statements.length - 1]!;
      if (x.documentedLock) return `${x.documentedLock.mode} (documented)`;
      const measured = x.effects?.locks.filter((l) => !/pg_|zero_downtime/.test(l.relation)).map((l) => `${l.mode} ${l.relation}`);
      if (measured && measured.length > 0) return measured.join(', ');
      return (x.requested ?? []).map((l) => `${l.mode} ${l.relation}`).join(', ');
    };
    const attach = /^AccessExclusiveLock public\.zd_pi_\w+, ShareUpdateExclusiveLock public\.(events_name_idx|zd_pi_events_2025_events_name_idx_\w+)$/;
    const build = 'ShareUpdateExclusiveLock (documented)';
    const expected: [string, boolean, string | RegExp][] = [
      ['create-index', true, 'ShareLock public.events'],
      ['partition:public.events_2024:build', false, build],
      ['partition:public.events_2024:attach', true, attach],
      ['partition:public.events_2025:create', true, 'ShareLock public.events_2025'],
      ['partition:public.events_2025_eu:build', false, build],
      ['partition:public.events_2025_eu:attach', true, attach],
      ['partition:public.events_2025_rest:build', false, build],
      ['partition:public.events_2025_rest:attach', true, attach],
      ['partition:public.events_2025:attach', true, /./],
      ['partition:public.p; drop table x:build', false, build],
      ['partition:public.p; drop table x:attach', true, attach],
      ['check-index', true, ''],
    ];
    expect(steps.map((s) => s.id)).to.deep.equal(expected.map((e) => e[0]));
    for (const [i, s] of steps.entries()) {
      const [, transactional, want] = expected[i]!;
      expect(s.transactional, s.id).to.equal(transactional);
      if (typeof want === 'string') expect(lock(s), s.id).to.equal(want);
      else expect(lock(s), s.id).to.match(want);
    }
  });
});

