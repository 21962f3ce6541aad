import { expect } from 'chai';
import type { Knex } from 'knex';
import type pg from 'pg';
import { zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { buildPlan, formatPlan, type PlannedStatement } from '../lib/ops/plan.js';
import { schemaSnapshot, dataChecksums } from '../lib/postgres/snapshot.js';
import { freshDatabase, knexFor, pgClient, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';

describe('umzug plan: locks, rewrites and scans as PostgreSQL reports them, nothing changed', function () {
  this.timeout(60_000);
  let url: string;
  let knex: Knex;
  let umzug: ZeroDowntimeUmzug;

  const picture = async () => {
    const c = await pgClient(url);
    try {
      const conn = { query: (t: string, v?: readonly unknown[]) => c.query(t, v as unknown[]) as never };
      return { schema: await schemaSnapshot(conn, ['public']), data: await dataChecksums(conn, ['public']) };
    } finally {
      await c.end();
    }
  };

  before(async () => {
    url = await freshDatabase('cli_plan');
    knex = knexFor(url, 4);
    await knex.raw(`CREATE TABLE orders (id bigint PRIMARY KEY, amount int NOT NULL, note text)`);
    await knex.raw(`INSERT INTO orders SELECT g, g % 100, 'n' || g FROM generate_series(1, 500) g`);
    const project = tempProject('cli-plan');
    project.write(
      '001.orders.ts',
      `import { defineMigration, addCheck, addIndex, sql } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  addCheck({ table: 'orders', name: 'orders_amount_positive', check: 'amount >= 0' }),
  addIndex({ table: 'orders', columns: ['amount'] }),
  sql({ up: 'ALTER TABLE orders ALTER COLUMN amount TYPE bigint', down: 'ALTER TABLE orders ALTER COLUMN amount TYPE int' }),
] });
`,
    );
    umzug = zeroDowntime({ knex: { client: 'pg', connection: url, pool: { min: 0, max: 4 } }, cwd: project.dir, logger: silentLogger, lock: { timeout: '300ms' } });
  });
  after(async () => {
    await umzug?.close();
    await knex?.destroy();
  });

  const statements = (plan: Awaited<ReturnType<typeof buildPlan>>, kind: string): PlannedStatement[] => {
    const c = plan.phases[0]!.changes.find((x) => x.kind === kind)!;
    return [...c.steps, ...c.afterBackfill].flatMap((s) => s.statements);
  };

  it('reports the NOT VALID check’s brief lock without a scan, the VALIDATE’s scan under SHARE UPDATE EXCLUSIVE, the type change’s rewrite, and CONCURRENTLY as documented', async () => {
    const before = await picture();
    const plan = await buildPlan(umzug);
    expect(plan.rolledBack).to.equal(true);
    const [notValid, validate] = statements(plan, 'addCheck');
    expect(notValid!.text).to.match(/NOT VALID/);
    expect(notValid!.effects!.locks).to.deep.equal([{ relation: 'public.orders', mode: 'AccessExclusiveLock' }]);
    expect(notValid!.effects!.scans).to.deep.equal([]);
    expect(validate!.text).to.match(/VALIDATE CONSTRAINT/);
    expect(validate!.effects!.locks).to.deep.equal([{ relation: 'public.orders', mode: 'ShareUpdateExclusiveLock' }]);
    // NOT VALID ran alone too (its lock is exact); VALIDATE needs the constraint, so it was measured after that step.
    expect(notValid!.lockSource).to.equal('isolated');
    expect(validate!.lockSource).to.equal('after-earlier-steps');
    expect(validate!.effects!.scans).to.deep.equal([{ relation: 'public.orders', rows: 500 }]);
    expect(validate!.effects!.rewrites).to.deep.equal([]);

    const index = statements(plan, 'addIndex').find((s) => /CREATE INDEX CONCURRENTLY/.test(s.text))!;
    expect(index.run).to.equal('described');
    expect(index.documentedLock!.mode).to.equal('ShareUpdateExclusiveLock');

    const [alter] = statements(plan, 'sql');
    expect(alter!.effects!.rewrites).to.deep.equal(['public.orders']);
    expect(alter!.effects!.locks[0]).to.deep.equal({ relation: 'public.orders', mode: 'AccessExclusiveLock' });

    const text = formatPlan(plan, { verbose: true });
    expect(text).to.include('REWRITES public.orders');
    expect(text).to.include('scans public.orders (500 rows)');
    expect(text).to.match(/SHARE UPDATE EXCLUSIVE \(blocks other DDL and VACUUM, not reads or writes\) — CREATE INDEX CONCURRENTLY: the lock PostgreSQL documents/);
    // The default view: one line per step, its strongest lock, rewrite and scan.
    const short = formatPlan(plan).split('\n');
    expect(short.some((l) => /step .*: SHARE UPDATE EXCLUSIVE on (public\.)?orders/.test(l)), short.join('\n')).to.equal(true);
    expect(short.some((l) => /step .*: ACCESS EXCLUSIVE on public\.orders \(blocks reads and writes\) · REWRITES public\.orders/.test(l)), short.join('\n')).to.equal(true);
    expect(short.filter((l) => l.startsWith('    $')), 'no SQL in the default view').to.deep.equal([]);

    expect(await picture()).to.deep.equal(before);
    const state = await knex.raw(`SELECT to_regnamespace('zero_downtime') IS NULL AS absent`);
    expect((state as { rows: { absent: boolean }[] }).rows[0]!.absent).to.equal(true);
  });

  it('behind a session holding a lock, plan reports the lock wait within lock.timeout instead of queueing', async () => {
    const holder: pg.Client = await pgClient(url, 'lock-holder');
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM orders LIMIT 1'); // ACCESS SHARE until the transaction ends
    try {
      const started = Date.now();
      const plan = await buildPlan(umzug);
      const [notValid] = statements(plan, 'addCheck');
      expect(notValid!.run).to.equal('failed');
      expect(notValid!.error).to.match(/could not get its lock within lock\.timeout/);
      // Every measured statement waits at most 300 ms, twice (the cumulative and the isolated run).
      expect(Date.now() - started).to.be.lessThan(10_000);
      // Meanwhile the holder's reads were never blocked behind a queued ACCESS EXCLUSIVE request.
      const r = await holder.query('SELECT count(*)::int AS n FROM orders');
      expect(r.rows[0].n).to.equal(500);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
  });

  it('cuts a long statement at the plan’s own statement timeout and says so, instead of holding its locks', async () => {
    const project = tempProject('cli-plan-slow');
    project.write('001.slow.ts', `import { defineMigration, sql } from 'umzug-zero-downtime';
export default defineMigration({ changes: [sql({ up: 'SELECT pg_sleep(2) FROM orders LIMIT 1', down: 'SELECT 1' })] });
`);
    const slow = zeroDowntime({ knex: { client: 'pg', connection: url, pool: { min: 0, max: 2 } }, cwd: project.dir, logger: silentLogger });
    try {
      const started = Date.now();
      const plan = await buildPlan(slow, { statementTimeoutMs: 200 });
      const [stmt] = statements(plan, 'sql');
      expect(stmt!.run).to.equal('failed');
      expect(stmt!.error).to.match(/did not finish within the plan's statement timeout/);
      expect(Date.now() - started).to.be.lessThan(1500);
    } finally {
      await slow.close();
    }
  });

  it('after up, plans only the contract; one with nothing to do (check, index, sql) has its gate open, no window', async () => {
    await umzug.up();
    const plan = await buildPlan(umzug);
    expect(plan.phases.map((p) => p.phase)).to.deep.equal(['contract']);
    expect(plan.phases[0]!.gate).to.deep.include({ open: true, reasons: [] });
    await umzug.down();
  });

  it('shows a plain migration\'s statements with the server\'s locks and scans (captured without a database, then run in the rolled-back plan)', async () => {
    const project = tempProject('cli-plan-plain');
    project.write(
      '001.plain.js',
      `exports.up = async ({ context }) => {\n  await context.knex.schema.alterTable('orders', (t) => { t.index('note'); });\n  await context.knex.raw('ALTER TABLE orders RENAME COLUMN note TO remark');\n};\nexports.down = async () => {};\n`,
    );
    const u = zeroDowntime({ knex: { client: 'pg', connection: url, pool: { min: 0, max: 4 } }, cwd: project.dir, logger: silentLogger, stateSchema: 'zd_plan_plain' });
    try {
      const plan = await buildPlan(u);
      const plain = plan.phases.find((p) => p.phase === 'plain')!;
      const sts = plain.changes[0]!.steps[0]!.statements;
      // Captured without a database, then run in the plan's rolled-back transaction: the server's own locks and scans.
      expect(sts.map((x) => [x.text, x.run, x.effects?.locks[0]?.mode])).to.deep.equal([
        ['create index "orders_note_index" on "orders" ("note")', 'measured', 'ShareLock'],
        ['ALTER TABLE orders RENAME COLUMN note TO remark', 'measured', 'AccessExclusiveLock'],
      ]);
      expect(sts[0]!.effects!.scans, 'the index build reads the table').to.deep.equal([{ relation: 'public.orders', rows: 500 }]);
      expect(formatPlan(plan)).to.match(/step up: ACCESS EXCLUSIVE on public\.orders/);
      const cols = await knex.raw(`SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'`);
      expect(cols.rows, 'nothing was run').to.have.length(1);
    } finally {
      await u.close();
    }
  });

  it('shows SET NOT NULL\'s ACCESS EXCLUSIVE even where an earlier step already took it, and a row estimate for a table never analyzed', async () => {
    await knex.raw(`CREATE TABLE "notes; x" (id bigint PRIMARY KEY, body text) WITH (autovacuum_enabled = false)`);
    await knex.raw(`INSERT INTO "notes; x" SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'b' END FROM generate_series(1, 5000) g`);
    const project = tempProject('cli-plan-not-null');
    project.write(
      '001.notes.ts',
      `import { defineMigration, setNotNull } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [setNotNull({ table: 'notes; x', column: 'body', default: 'none' })] });\n`,
    );
    const u = zeroDowntime({ knex: { client: 'pg', connection: url, pool: { min: 0, max: 4 } }, cwd: project.dir, logger: silentLogger, stateSchema: 'zd_plan_nn' });
    try {
      const plan = await buildPlan(u);
      const contract = plan.phases.find((p) => p.phase === 'contract')!;
      const all = plan.phases.flatMap((p) => p.changes.flatMap((c) => [...c.steps, ...c.afterBackfill]));
      const setNn = all.flatMap((st) => st.statements).find((st) => /SET NOT NULL/.test(st.text))!;
      expect(setNn.requested!.map((l) => l.mode)).to.deep.equal(['AccessExclusiveLock']);
      const text = formatPlan(plan, { verbose: true });
      // Here the plan's one-row backfill sample leaves NULLs, so the server refuses SET NOT NULL; its lock is still said.
      expect(text, text).to.match(/SET NOT NULL\n\s+! refused[^\n]*\n\s+lock it requests: ACCESS EXCLUSIVE on public\.notes; x \(blocks reads and writes; ALTER TABLE … SET NOT NULL\)/);
      // Where the transaction already held it, the lock is shown with why pg_locks showed nothing new.
      expect(text).to.match(/DROP CONSTRAINT[^\n]*\n\s+lock: ACCESS EXCLUSIVE on public\.notes; x \(blocks reads and writes; ALTER TABLE … DROP CONSTRAINT: held in the plan's transaction since an earlier step/);
      expect(formatPlan(plan)).to.match(/step set-not-null[^\n]*: ACCESS EXCLUSIVE on public\.notes; x/);
      const backfill = plan.phases.flatMap((p) => p.changes).find((c) => c.backfill)!.backfill!;
      expect(backfill.estimateSource).to.equal('planner');
      expect(backfill.estimatedRows).to.be.within(2500, 10_000);
      expect(formatPlan(plan)).to.match(/backfill public\.notes; x: ~\d+ rows \(never analyzed/);
      expect(contract).to.not.equal(undefined);
    } finally {
      await u.close();
    }
  });
});
