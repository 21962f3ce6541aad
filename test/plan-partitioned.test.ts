// The plan tier for partitioned tables: describe() on a stored catalog (test/fixtures/plan-partitioned-catalog.json,
// read from plan-partitioned.sql: events range-partitioned with a list-partitioned partition and a default one named
// `p; drop table x`, sessions hash-partitioned, logs partitioned by an expression), no database. It pins the step
// ids (persisted: a resumed run skips by them), the exact statements with the lock each requests, and the refusals.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { addCheck, addColumn, addForeignKey, addIndex, addUnique, changeColumnType, deriveColumn, dropColumn, dropIndex, dropTable, renameColumn, renameTable, setNotNull, splitTable, type Change } from '../lib/index.js';
import type { PhasePlan } from '../lib/migration.js';
import type { CatalogSnapshot, TableInfo } from '../lib/postgres/catalog.js';
import { loadSqlParser, requestedLocksSync } from '../lib/postgres/statement-locks.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const catalog = JSON.parse(readFileSync(path.join(here, 'fixtures/plan-partitioned-catalog.json'), 'utf8')) as CatalogSnapshot;
const ctx = { defaultSchema: 'public', stateSchema: 'zero_downtime' };

/** Each step as `id [tx|no tx]`, then its statements, whitespace folded, each with the locks it requests. */
function lines(p: PhasePlan): string[] {
  return [...p.steps, ...(p.afterBackfill ?? [])].flatMap((s) => [
    `${s.id} [${s.transactional ? 'tx' : 'no tx'}]`,
    ...s.statements.map((st) => {
      const locks = requestedLocksSync(st.text).map((l) => `${l.mode} ${l.relation}`);
      return `  ${st.text.replace(/\s+/g, ' ').trim()}${locks.length > 0 ? `  -- ${locks.join('; ')}` : ''}`;
    }),
  ]);
}

const ids = (p: PhasePlan) => p.steps.map((s) => s.id);

function refusal(change: Change, snapshot: CatalogSnapshot = catalog): string {
  try {
    change.describe(snapshot, ctx);
  } catch (e) {
    expect((e as Error).name).to.equal('ChangeInputError');
    return (e as Error).message;
  }
  throw new Error(`${change.kind} was not refused`);
}

/** The catalog with one table's facts changed (a foreign partition, another server version, an older snapshot). */
function withTable(name: string, f: (t: TableInfo) => TableInfo): CatalogSnapshot {
  const key = `public.${name}`;
  return { ...catalog, tables: { ...catalog.tables, [key]: f(catalog.tables[key]!) } };
}

describe('plan tier: partitioned tables (no database)', () => {
  before(() => loadSqlParser());

  it('addIndex on a hash-partitioned table: ON ONLY, each partition CONCURRENTLY and attached, then a validity check; down drops the parent first', () => {
    const d = addIndex({ table: 'sessions', columns: ['user_id'] }).describe(catalog, ctx);
    expect(d.summary).to.equal('add index sessions_user_id_idx on the partitioned public.sessions (user_id), one partition at a time (2 partitions)');
    expect(lines(d.expand).filter((l) => !l.startsWith('  DO '))).to.deep.equal([
      'create-index [tx]',
      '  CREATE INDEX IF NOT EXISTS "sessions_user_id_idx" ON ONLY "public"."sessions" ("user_id")  -- ShareLock public.sessions',
      'partition:public.sessions_0:build [no tx]',
      '  CREATE INDEX CONCURRENTLY IF NOT EXISTS "zd_pi_sessions_0_sessions_user_id_id_819e5f81" ON "public"."sessions_0" ("user_id")  -- ShareUpdateExclusiveLock public.sessions_0',
      'partition:public.sessions_0:attach [tx]',
      '  ALTER INDEX "public"."sessions_user_id_idx" ATTACH PARTITION "public"."zd_pi_sessions_0_sessions_user_id_id_819e5f81"  -- AccessExclusiveLock public.zd_pi_sessions_0_sessions_user_id_id_819e5f81; ShareUpdateExclusiveLock public.sessions_user_id_idx',
      'partition:public.sessions_1:build [no tx]',
      '  CREATE INDEX CONCURRENTLY IF NOT EXISTS "zd_pi_sessions_1_sessions_user_id_id_c13a95ca" ON "public"."sessions_1" ("user_id")  -- ShareUpdateExclusiveLock public.sessions_1',
      'partition:public.sessions_1:attach [tx]',
      '  ALTER INDEX "public"."sessions_user_id_idx" ATTACH PARTITION "public"."zd_pi_sessions_1_sessions_user_id_id_c13a95ca"  -- AccessExclusiveLock public.zd_pi_sessions_1_sessions_user_id_id_c13a95ca; ShareUpdateExclusiveLock public.sessions_user_id_idx',
      'check-index [tx]',
    ]);
    // The leftover of a killed build is dropped by the executor before the build runs again.
    expect(d.expand.steps.filter((s) => !s.transactional).map((s) => s.concurrentIndex)).to.deep.equal([
      { schema: 'public', name: 'zd_pi_sessions_0_sessions_user_id_id_819e5f81' },
      { schema: 'public', name: 'zd_pi_sessions_1_sessions_user_id_id_c13a95ca' },
    ]);
    expect(lines(d.undoExpand)).to.deep.equal([
      'drop-index [tx]',
      '  DROP INDEX IF EXISTS "public"."sessions_user_id_idx"  -- AccessExclusiveLock public.sessions_user_id_idx',
      'partition:public.sessions_0:drop [no tx]',
      '  DROP INDEX CONCURRENTLY IF EXISTS "public"."zd_pi_sessions_0_sessions_user_id_id_819e5f81"  -- ShareUpdateExclusiveLock public.zd_pi_sessions_0_sessions_user_id_id_819e5f81',
      'partition:public.sessions_1:drop [no tx]',
      '  DROP INDEX CONCURRENTLY IF EXISTS "public"."zd_pi_sessions_1_sessions_user_id_id_c13a95ca"  -- ShareUpdateExclusiveLock public.zd_pi_sessions_1_sessions_user_id_id_c13a95ca',
      // No statement of its own: at run time it drops what a stopped catch-up built on a partition not read here.
      'drop-late-leftovers [tx]',
    ]);
    expect(d.undoExpand.steps.at(-1)!.partitionIndexLeftovers).to.deep.equal({
      table: { schema: 'public', name: 'sessions' },
      index: 'sessions_user_id_idx',
      known: ['public.sessions_0', 'public.sessions_1'],
      constraint: false,
    });
    expect(d.contract.steps).to.deep.equal([]);
  });

  it('addIndex on a sub-partitioned table: the list-partitioned partition gets an ON ONLY index of its own, attached after its leaves', () => {
    const d = addIndex({ table: 'events', columns: ['name'], where: 'n > 0' }).describe(catalog, ctx);
    expect(ids(d.expand)).to.deep.equal([
      'create-index',
      'partition:public.events_2024:build',
      'partition:public.events_2024:attach',
      'partition:public.events_2025:create',
      'partition:public.events_2025_eu:build',
      'partition:public.events_2025_eu:attach',
      'partition:public.events_2025_rest:build',
      'partition:public.events_2025_rest:attach',
      'partition:public.events_2025:attach',
      'partition:public.p; drop table x:build',
      'partition:public.p; drop table x:attach',
      'check-index',
    ]);
    const sub = lines(d.expand).filter((l) => /events_2025"? |events_2025_eu/.test(l) && l.startsWith('  '));
    expect(sub).to.deep.equal([
      '  CREATE INDEX IF NOT EXISTS "zd_pi_events_2025_events_name_idx_pu_4623c26c" ON ONLY "public"."events_2025" ("name") WHERE (n > 0)  -- ShareLock public.events_2025',
      '  CREATE INDEX CONCURRENTLY IF NOT EXISTS "zd_pi_events_2025_eu_events_name_idx_778be6b5" ON "public"."events_2025_eu" ("name") WHERE (n > 0)  -- ShareUpdateExclusiveLock public.events_2025_eu',
      '  ALTER INDEX "public"."zd_pi_events_2025_events_name_idx_pu_4623c26c" ATTACH PARTITION "public"."zd_pi_events_2025_eu_events_name_idx_778be6b5"  -- AccessExclusiveLock public.zd_pi_events_2025_eu_events_name_idx_778be6b5; ShareUpdateExclusiveLock public.zd_pi_events_2025_events_name_idx_pu_4623c26c',
    ]);
    // The partition named to break unquoted SQL stays one quoted identifier everywhere.
    expect(lines(d.expand).filter((l) => l.includes('p; drop table x')).every((l) => l.includes('"p; drop table x"') || l.startsWith('partition:'))).to.equal(true);
    expect(ids(d.undoExpand)).to.deep.equal([
      'drop-index',
      'partition:public.events_2024:drop',
      'partition:public.events_2025:drop',
      'partition:public.events_2025_eu:drop',
      'partition:public.events_2025_rest:drop',
      'partition:public.p; drop table x:drop',
      'drop-late-leftovers',
    ]);
  });

  it('addUnique: a unique index and constraint on each leaf, the sub-partitioned partition and then the table adopt them', () => {
    const d = addUnique({ table: 'events', columns: ['name', 'created_at', 'region'], name: 'events_name_key' }).describe(catalog, ctx);
    expect(ids(d.expand)).to.deep.equal([
      'partition:public.events_2024:build',
      'partition:public.events_2024:constraint',
      'partition:public.events_2025_eu:build',
      'partition:public.events_2025_eu:constraint',
      'partition:public.events_2025_rest:build',
      'partition:public.events_2025_rest:constraint',
      'partition:public.events_2025:constraint',
      'partition:public.p; drop table x:build',
      'partition:public.p; drop table x:constraint',
      'add-constraint',
    ]);
    const l = lines(d.expand);
    expect(l.slice(0, 4)).to.deep.equal([
      'partition:public.events_2024:build [no tx]',
      '  CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "zd_pi_events_2024_events_name_key_pu_a514c67d" ON "public"."events_2024" ("name", "created_at", "region")  -- ShareUpdateExclusiveLock public.events_2024',
      'partition:public.events_2024:constraint [tx]',
      '  ALTER TABLE "public"."events_2024" ADD CONSTRAINT "zd_pi_events_2024_events_name_key_pu_a514c67d" UNIQUE USING INDEX "zd_pi_events_2024_events_name_key_pu_a514c67d"  -- AccessExclusiveLock public.events_2024',
    ]);
    const top = l.slice(l.indexOf('add-constraint [tx]'));
    expect(top[1]).to.equal('  LOCK TABLE ONLY "public"."events" IN SHARE UPDATE EXCLUSIVE MODE  -- ShareUpdateExclusiveLock public.events');
    // The check names the partitions whose constraints the table adopts: every one in the snapshot, by value.
    expect(top[2]).to.match(/^ {2}DO \$zd\$ .*\(VALUES \('"public"\."events_2024"', 'zd_pi_events_2024_events_name_key_pu_a514c67d'\), \('"public"\."events_2025"', 'zd_pi_events_2025_events_name_key_pu_d73c0b34'\), \('"public"\."p; drop table x"', 'zd_pi_pdroptablex_events_name_key_pu_0d6ad045'\)\)/);
    expect(top[3]).to.equal('  ALTER TABLE "public"."events" ADD CONSTRAINT "events_name_key" UNIQUE ("name", "created_at", "region")  -- AccessExclusiveLock public.events');
    expect(lines(d.undoExpand).slice(0, 5)).to.deep.equal([
      'drop-constraint [tx]',
      '  ALTER TABLE "public"."events" DROP CONSTRAINT IF EXISTS "events_name_key"  -- AccessExclusiveLock public.events',
      'partition:public.events_2024:drop [no tx]',
      '  ALTER TABLE "public"."events_2024" DROP CONSTRAINT IF EXISTS "zd_pi_events_2024_events_name_key_pu_a514c67d"  -- AccessExclusiveLock public.events_2024',
      '  DROP INDEX CONCURRENTLY IF EXISTS "public"."zd_pi_events_2024_events_name_key_pu_a514c67d"  -- ShareUpdateExclusiveLock public.zd_pi_events_2024_events_name_key_pu_a514c67d',
    ]);
  });

  it('dropIndex: DROP INDEX (no CONCURRENTLY on a partitioned index); down builds it again with every partition\'s original index name', () => {
    const d = dropIndex({ table: 'events', name: 'events_region_idx' }).describe(catalog, ctx);
    expect(lines(d.contract)).to.deep.equal(['drop-index [tx]', '  DROP INDEX IF EXISTS "public"."events_region_idx"  -- AccessExclusiveLock public.events_region_idx']);
    expect(lines(d.undoContract).filter((l) => !l.startsWith('  DO '))).to.deep.equal([
      'create-index [tx]',
      '  CREATE INDEX IF NOT EXISTS "events_region_idx" ON ONLY "public"."events" USING btree (region, n)  -- ShareLock public.events',
      'partition:public.events_2024:build [no tx]',
      '  CREATE INDEX CONCURRENTLY IF NOT EXISTS "events_2024_region_n_idx" ON "public"."events_2024" USING btree (region, n)  -- ShareUpdateExclusiveLock public.events_2024',
      'partition:public.events_2024:attach [tx]',
      '  ALTER INDEX "public"."events_region_idx" ATTACH PARTITION "public"."events_2024_region_n_idx"  -- AccessExclusiveLock public.events_2024_region_n_idx; ShareUpdateExclusiveLock public.events_region_idx',
      'partition:public.events_2025:create [tx]',
      '  CREATE INDEX IF NOT EXISTS "events_2025_region_n_idx" ON ONLY "public"."events_2025" USING btree (region, n)  -- ShareLock public.events_2025',
      'partition:public.events_2025_eu:build [no tx]',
      '  CREATE INDEX CONCURRENTLY IF NOT EXISTS "events_2025_eu_region_n_idx" ON "public"."events_2025_eu" USING btree (region, n)  -- ShareUpdateExclusiveLock public.events_2025_eu',
      'partition:public.events_2025_eu:attach [tx]',
      '  ALTER INDEX "public"."events_2025_region_n_idx" ATTACH PARTITION "public"."events_2025_eu_region_n_idx"  -- AccessExclusiveLock public.events_2025_eu_region_n_idx; ShareUpdateExclusiveLock public.events_2025_region_n_idx',
      'partition:public.events_2025_rest:build [no tx]',
      '  CREATE INDEX CONCURRENTLY IF NOT EXISTS "events_2025_rest_region_n_idx" ON "public"."events_2025_rest" USING btree (region, n)  -- ShareUpdateExclusiveLock public.events_2025_rest',
      'partition:public.events_2025_rest:attach [tx]',
      '  ALTER INDEX "public"."events_2025_region_n_idx" ATTACH PARTITION "public"."events_2025_rest_region_n_idx"  -- AccessExclusiveLock public.events_2025_rest_region_n_idx; ShareUpdateExclusiveLock public.events_2025_region_n_idx',
      'partition:public.events_2025:attach [tx]',
      '  ALTER INDEX "public"."events_region_idx" ATTACH PARTITION "public"."events_2025_region_n_idx"  -- AccessExclusiveLock public.events_2025_region_n_idx; ShareUpdateExclusiveLock public.events_region_idx',
      'partition:public.p; drop table x:build [no tx]',
      '  CREATE INDEX CONCURRENTLY IF NOT EXISTS "p; drop table x_region_n_idx" ON "public"."p; drop table x" USING btree (region, n)  -- ShareUpdateExclusiveLock public.p; drop table x',
      'partition:public.p; drop table x:attach [tx]',
      '  ALTER INDEX "public"."events_region_idx" ATTACH PARTITION "public"."p; drop table x_region_n_idx"  -- AccessExclusiveLock public.p; drop table x_region_n_idx; ShareUpdateExclusiveLock public.events_region_idx',
      'check-index [tx]',
    ]);
  });

  describe('refused before anything runs, naming the partition and why', () => {
    it('a unique index without the partition key of the table, or of a partition below it', () => {
      expect(refusal(addUnique({ table: 'sessions', columns: ['user_id'] }))).to.equal(
        'addIndex: a unique index on (user_id) cannot be built on the partitioned table public.sessions: public.sessions is partitioned by (id), and a unique index on a partitioned table must hold every partition key column (PostgreSQL checks uniqueness within each partition only); id is not among (user_id). Nothing was changed.',
      );
      expect(refusal(addIndex({ table: 'events', columns: ['name', 'created_at'], unique: true }))).to.match(/its partition public\.events_2025 is partitioned by \(region\).*region is not among \(name, created_at\)/);
    });

    it('a unique index on a table partitioned by an expression', () => {
      expect(refusal(addIndex({ table: 'logs', columns: ['k'], unique: true }))).to.match(/public\.logs is partitioned by an expression/);
      // Not unique: nothing to enforce across partitions, so it is planned.
      expect(ids(addIndex({ table: 'logs', columns: ['k'] }).describe(catalog, ctx).expand)).to.deep.equal(['create-index', 'partition:public.logs_a:build', 'partition:public.logs_a:attach', 'check-index']);
    });

    it('an index on a table with a foreign partition, and a dropIndex whose down would need one', () => {
      const foreign = withTable('events', (t) => ({
        ...t,
        partitioning: { ...t.partitioning!, partitions: t.partitioning!.partitions.map((p) => (p.table.name === 'events_2024' ? { ...p, kind: 'foreign' as const, indexes: [] } : p)) },
      }));
      expect(refusal(addIndex({ table: 'events', columns: ['name'] }), foreign)).to.match(/the partition public\.events_2024 is a foreign table, which cannot have an index/);
      expect(refusal(dropIndex({ table: 'events', name: 'events_region_idx' }), foreign)).to.match(/^dropIndex: events_region_idx of the partitioned table public\.events could not be built again by down: the partition public\.events_2024 is a foreign table/);
    });

    it('a foreign key NOT VALID before PostgreSQL 18; from 18 it is planned as on a plain table', () => {
      const fk = () => addForeignKey({ table: 'events', columns: ['n'], references: { table: 'sessions', columns: ['id'] } });
      expect(refusal(fk())).to.match(/^addForeignKey: public\.events \(partitions .*\) is partitioned, and PostgreSQL 15 cannot add a foreign key NOT VALID to a partitioned table/);
      const pg18 = withTable('events', (t) => ({ ...t, partitioning: { ...t.partitioning!, serverVersion: 180000 } }));
      expect(ids(fk().describe(pg18, ctx).expand)).to.deep.equal(['add-foreign-key', 'validate']);
    });

    it('a column swap, drop or restore of a partition key column, of a column under a unique constraint, or with a foreign key before 18', () => {
      expect(refusal(changeColumnType({ table: 'events', column: 'created_at', type: 'timestamptz' }))).to.equal(
        'changeColumnType: public.events (partitions public.events_2024, public.events_2025, public.events_2025_eu, public.events_2025_rest, … 5 in all) is partitioned, and created_at has what cannot be carried over safely there: ' +
          'its place in the partition key of public.events (created_at): PostgreSQL cannot drop a partition key column, nor put another in its place; the unique constraint events_name_uniq (on partitioned tables PostgreSQL cannot make an index built partition by partition a constraint with USING INDEX); the primary key events_pkey (on partitioned tables PostgreSQL cannot make an index built partition by partition a constraint with USING INDEX). ' +
          'Nothing was changed. A partition key column cannot be replaced in place: move the rows into a new table partitioned as you want it (sql()), or leave the column as it is.',
      );
      expect(refusal(renameColumn({ table: 'events', from: 'name', to: 'title' }))).to.match(/^renameColumn: .* name has what cannot be carried over safely there: the unique constraint events_name_uniq/);
      expect(refusal(dropColumn({ table: 'events', column: 'name' }))).to.match(/^dropColumn: .* the unique constraint events_name_uniq/);
      expect(refusal(deriveColumn({ table: 'events', column: { name: 't', type: 'text' }, from: ['name'], up: 'name', down: { name: 't' }, dropSources: true }))).to.match(/^deriveColumn: .* the unique constraint events_name_uniq/);
      expect(refusal(changeColumnType({ table: 'events', column: 'n', type: 'bigint' }))).to.match(/^changeColumnType: .* n has what cannot be carried over safely there: the foreign key events_n_fkey \(PostgreSQL 15 cannot add one NOT VALID to a partitioned table; 18 can\)/);
      const pg18 = withTable('events', (t) => ({ ...t, partitioning: { ...t.partitioning!, serverVersion: 180000 } }));
      expect(ids(changeColumnType({ table: 'events', column: 'n', type: 'bigint' }).describe(pg18, ctx).expand)).to.deep.equal(['add-column-and-sync']);
      // Without a swap: deriveColumn keeping its sources.
      expect(ids(deriveColumn({ table: 'events', column: { name: 'label', type: 'text' }, from: ['name'], up: 'upper(name)' }).describe(catalog, ctx).expand)).to.deep.equal(['add-column-and-sync']);
    });

    it('a sync trigger on a partitioned table before PostgreSQL 13', () => {
      const pg12 = withTable('events', (t) => ({ ...t, partitioning: { ...t.partitioning!, serverVersion: 120017 } }));
      expect(refusal(renameColumn({ table: 'events', from: 'note', to: 'remark' }), pg12)).to.match(/PostgreSQL 12 cannot put its sync trigger \(BEFORE INSERT OR UPDATE, for each row\) on a partitioned table \(13 can\)/);
      expect(refusal(deriveColumn({ table: 'events', column: { name: 'label', type: 'text' }, from: ['note'], up: 'upper(note)' }), pg12)).to.match(/^deriveColumn: .* PostgreSQL 12 cannot put its sync trigger/);
    });

    it('a foreign key to a partitioned table before PostgreSQL 12, and splitTable (whose new table references its source)', () => {
      const pg11 = (name: string) => withTable(name, (t) => ({ ...t, partitioning: { ...t.partitioning!, serverVersion: 110022 } }));
      expect(refusal(addForeignKey({ table: 'counters', columns: ['id'], references: { table: 'sessions', columns: ['id'] } }), pg11('sessions'))).to.equal(
        'addForeignKey: public.sessions (partitions public.sessions_0, public.sessions_1) is partitioned, and PostgreSQL 11 cannot make a foreign key that references a partitioned table (12 can). Nothing was changed. Upgrade to PostgreSQL 12 or later to reference public.sessions, or reference a table that is not partitioned.',
      );
      expect(ids(addForeignKey({ table: 'counters', columns: ['id'], references: { table: 'sessions', columns: ['id'] } }).describe(catalog, ctx).expand)).to.deep.equal(['add-foreign-key', 'validate']);
      const split = () => splitTable({ from: 'sessions', to: 'session_users', columns: ['user_id'], key: ['id'] });
      expect(refusal(split(), pg11('sessions'))).to.match(/^splitTable: public\.sessions \(partitions public\.sessions_0, public\.sessions_1\) is partitioned, and PostgreSQL 11 cannot make a foreign key that references a partitioned table \(12 can\)\. Nothing was changed\./);
      expect(ids(split().describe(catalog, ctx).expand)).to.deep.equal(['create-table', 'sync']);
    });

    it('a change started by a release that did not read partitions keeps the plan it started with', () => {
      const older = withTable('events', ({ partitioning: _dropped, ...t }) => t);
      expect(() => renameColumn({ table: 'events', from: 'note', to: 'remark' }).describe(older, ctx)).to.not.throw();
      expect(() => addIndex({ table: 'events', columns: ['note'] }).describe(older, ctx)).to.not.throw();
    });
  });

  it('addColumn, setNotNull, addCheck, renameTable: the plan of a plain table (PostgreSQL applies each statement to every partition)', () => {
    const notNull = addColumn({ table: 'events', column: { name: 'slug', type: 'text', nullable: false, default: '' }, backfill: "'s-' || id" }).describe(catalog, ctx);
    expect([...ids(notNull.expand), ...(notNull.expand.afterBackfill ?? []).map((s) => s.id)]).to.deep.equal(['add-column', 'add-not-null-check', 'validate-not-null', 'set-not-null']);
    const nn = setNotNull({ table: 'events', column: 'note', default: 'none' }).describe(catalog, ctx);
    expect((nn.expand.afterBackfill ?? []).map((s) => s.id)).to.deep.equal(['register-archive', 'add-check', 'validate-check']);
    expect(ids(nn.contract)).to.deep.equal(['set-not-null']);
    expect(ids(addCheck({ table: 'events', name: 'events_n_sane', check: 'n >= 0' }).describe(catalog, ctx).expand)).to.deep.equal(['add-check', 'validate']);
    expect(ids(renameTable({ from: 'events', to: 'happenings' }).describe(catalog, ctx).expand)).to.deep.equal(['rename-with-view']);
  });

  it('dropTable: the partitions are moved into the state schema with the table (SET SCHEMA leaves them behind), after a check that they are the ones read; down moves them back', () => {
    const d = dropTable({ table: 'events' }).describe(catalog, ctx);
    const plain = (p: PhasePlan) => lines(p).filter((l) => !l.startsWith('  DO ') && !l.includes('column_archives'));
    expect(plain(d.contract)).to.deep.equal([
      'archive-table [tx]',
      '  LOCK TABLE "public"."events" IN ACCESS EXCLUSIVE MODE  -- AccessExclusiveLock public.events',
      '  ALTER TABLE "public"."events" RENAME TO "zd_dropped_public_events_92e07dd6"  -- AccessExclusiveLock public.events',
      '  ALTER TABLE "public"."zd_dropped_public_events_92e07dd6" SET SCHEMA "zero_downtime"  -- AccessExclusiveLock public.zd_dropped_public_events_92e07dd6',
      '  ALTER TABLE "public"."events_2024" RENAME TO "zd_dropped_public_events_2024_c90c1fb7"  -- AccessExclusiveLock public.events_2024',
      '  ALTER TABLE "public"."zd_dropped_public_events_2024_c90c1fb7" SET SCHEMA "zero_downtime"  -- AccessExclusiveLock public.zd_dropped_public_events_2024_c90c1fb7',
      '  ALTER TABLE "public"."events_2025" RENAME TO "zd_dropped_public_events_2025_c80c1e24"  -- AccessExclusiveLock public.events_2025',
      '  ALTER TABLE "public"."zd_dropped_public_events_2025_c80c1e24" SET SCHEMA "zero_downtime"  -- AccessExclusiveLock public.zd_dropped_public_events_2025_c80c1e24',
      '  ALTER TABLE "public"."events_2025_eu" RENAME TO "zd_dropped_public_events_2025_eu_e0b656fb"  -- AccessExclusiveLock public.events_2025_eu',
      '  ALTER TABLE "public"."zd_dropped_public_events_2025_eu_e0b656fb" SET SCHEMA "zero_downtime"  -- AccessExclusiveLock public.zd_dropped_public_events_2025_eu_e0b656fb',
      '  ALTER TABLE "public"."events_2025_rest" RENAME TO "zd_dropped_public_events_2025_rest_a298d593"  -- AccessExclusiveLock public.events_2025_rest',
      '  ALTER TABLE "public"."zd_dropped_public_events_2025_rest_a298d593" SET SCHEMA "zero_downtime"  -- AccessExclusiveLock public.zd_dropped_public_events_2025_rest_a298d593',
      '  ALTER TABLE "public"."p; drop table x" RENAME TO "zd_dropped_public_pdroptablex_55c96ccf"  -- AccessExclusiveLock public.p; drop table x',
      '  ALTER TABLE "public"."zd_dropped_public_pdroptablex_55c96ccf" SET SCHEMA "zero_downtime"  -- AccessExclusiveLock public.zd_dropped_public_pdroptablex_55c96ccf',
    ]);
    // The check that the partitions are the five read comes right after the lock that keeps them so.
    const check = d.contract.steps[0]!.statements[1]!.text;
    expect(check).to.match(/^DO /).and.include(`VALUES ('public', 'events_2024'), ('public', 'events_2025'), ('public', 'events_2025_eu'), ('public', 'events_2025_rest'), ('public', 'p; drop table x')`);
    expect(plain(d.undoContract).filter((l) => /events_2024|pdroptablex/.test(l))).to.deep.equal([
      '  ALTER TABLE "zero_downtime"."zd_dropped_public_events_2024_c90c1fb7" SET SCHEMA "public"  -- AccessExclusiveLock zero_downtime.zd_dropped_public_events_2024_c90c1fb7',
      '  ALTER TABLE "public"."zd_dropped_public_events_2024_c90c1fb7" RENAME TO "events_2024"  -- AccessExclusiveLock public.zd_dropped_public_events_2024_c90c1fb7',
      '  ALTER TABLE "zero_downtime"."zd_dropped_public_pdroptablex_55c96ccf" SET SCHEMA "public"  -- AccessExclusiveLock zero_downtime.zd_dropped_public_pdroptablex_55c96ccf',
      '  ALTER TABLE "public"."zd_dropped_public_pdroptablex_55c96ccf" RENAME TO "p; drop table x"  -- AccessExclusiveLock public.zd_dropped_public_pdroptablex_55c96ccf',
    ]);
  });

  it('renameColumn: the column\'s index rebuilt partition by partition after the backfill; the swap gives every partition\'s index its original name', () => {
    const d = renameColumn({ table: 'events', from: 'note', to: 'remark' }).describe(catalog, ctx);
    expect(ids(d.expand)).to.deep.equal(['add-column-and-sync']);
    expect((d.expand.afterBackfill ?? []).map((s) => s.id)).to.deep.equal([
      'tw-index-events_note_idx:create-index',
      'tw-index-events_note_idx:partition:public.events_2024:build',
      'tw-index-events_note_idx:partition:public.events_2024:attach',
      'tw-index-events_note_idx:partition:public.events_2025:create',
      'tw-index-events_note_idx:partition:public.events_2025_eu:build',
      'tw-index-events_note_idx:partition:public.events_2025_eu:attach',
      'tw-index-events_note_idx:partition:public.events_2025_rest:build',
      'tw-index-events_note_idx:partition:public.events_2025_rest:attach',
      'tw-index-events_note_idx:partition:public.events_2025:attach',
      'tw-index-events_note_idx:partition:public.p; drop table x:build',
      'tw-index-events_note_idx:partition:public.p; drop table x:attach',
      'tw-index-events_note_idx:check-index',
      'tw-check-objects',
    ]);
    const built = lines({ steps: d.expand.afterBackfill ?? [] });
    expect(built[1]).to.equal('  CREATE INDEX IF NOT EXISTS "zd_tw_events_events_note_idx_47c481df" ON ONLY "public"."events" USING btree ("remark")  -- ShareLock public.events');
    const swap = lines({ steps: (d.contract.afterBackfill ?? []).filter((s) => s.id === 'swap') }).filter((l) => l.includes('RENAME'));
    expect(swap[0]).to.equal('  ALTER INDEX "public"."zd_tw_events_events_note_idx_47c481df" RENAME TO "events_note_idx"  -- ShareUpdateExclusiveLock public.zd_tw_events_events_note_idx_47c481df');
    // The partitions' renames are one DO block: each planned rename runs only while its partition is still below the
    // table (a detached one keeps its own index names), and a partition created or attached since gets the route's name.
    expect(swap).to.have.length(2);
    const planned = [...swap[1]!.matchAll(/IF EXISTS \(SELECT 1 FROM pg_partition_ancestors\(to_regclass\('([^']+)'\)\) a WHERE a\.relid = '"public"\."events"'::regclass\) AND to_regclass\('[^']+'\) IS NOT NULL THEN EXECUTE '([^']+)'/g)].map(
      (m) => `${m[1]}: ${m[2]}`,
    );
    expect(planned).to.deep.equal([
      '"public"."events_2024": ALTER INDEX "public"."zd_pi_events_2024_zd_tw_events_event_c879f81f" RENAME TO "events_2024_note_idx"',
      '"public"."events_2025": ALTER INDEX "public"."zd_pi_events_2025_zd_tw_events_event_2da46eb2" RENAME TO "events_2025_note_idx"',
      '"public"."events_2025_eu": ALTER INDEX "public"."zd_pi_events_2025_eu_zd_tw_events_ev_42b963e3" RENAME TO "events_2025_eu_note_idx"',
      '"public"."events_2025_rest": ALTER INDEX "public"."zd_pi_events_2025_rest_zd_tw_events__3f96dbd3" RENAME TO "events_2025_rest_note_idx"',
      '"public"."p; drop table x": ALTER INDEX "public"."zd_pi_pdroptablex_zd_tw_events_event_7358ad97" RENAME TO "p; drop table x_note_idx"',
    ]);
    expect(swap[1]).to.include(`WHERE NOT (tn.nspname || '.' || tc.relname) = ANY (ARRAY['public.events_2024', 'public.events_2025', 'public.events_2025_eu', 'public.events_2025_rest', 'public.p; drop table x']::text[])`);
  });

  it('the steps planned for a partition carry it (skipped once detached), and check-index what to catch up with', () => {
    const d = addIndex({ table: 'events', columns: ['name'] }).describe(catalog, ctx);
    const perPartition = d.expand.steps.filter((s) => s.id.startsWith('partition:'));
    expect(perPartition.map((s) => s.partition && `${s.partition.root.name} > ${s.partition.table.name}`)).to.deep.equal([
      'events > events_2024', 'events > events_2024', 'events > events_2025', 'events > events_2025_eu', 'events > events_2025_eu',
      'events > events_2025_rest', 'events > events_2025_rest', 'events > events_2025', 'events > p; drop table x', 'events > p; drop table x',
    ]);
    const check = d.expand.steps.find((s) => s.id === 'check-index')!;
    expect(check.partitionIndexCatchUp).to.deep.equal({
      table: { schema: 'public', name: 'events' },
      index: 'events_name_idx',
      shape: { unique: false, body: ' ("name")' },
      known: ['public.events_2024', 'public.events_2025', 'public.events_2025_eu', 'public.events_2025_rest', 'public.p; drop table x'],
    });
    expect(d.expand.steps.filter((s) => s.id !== 'check-index' && !s.id.startsWith('partition:')).map((s) => [s.id, s.partition, s.partitionIndexCatchUp])).to.deep.equal([['create-index', undefined, undefined]]);
  });

  it('ALTER INDEX … ATTACH PARTITION requests ACCESS EXCLUSIVE on the partition\'s index and SHARE UPDATE EXCLUSIVE on the parent index', () => {
    expect(requestedLocksSync('ALTER INDEX "s"."parent" ATTACH PARTITION "t"."child"').map((l) => `${l.mode} ${l.relation} (${l.form})`)).to.deep.equal([
      "AccessExclusiveLock t.child (ALTER INDEX … ATTACH PARTITION (the partition's index))",
      'ShareUpdateExclusiveLock s.parent (ALTER INDEX … ATTACH PARTITION (the parent index))',
    ]);
  });
});
