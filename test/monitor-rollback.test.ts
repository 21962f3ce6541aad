import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime, ThresholdBreachedError, type ZeroDowntimeUmzug } from '../lib/index.js';
import { Db } from '../lib/db/db.js';
import { schemaSnapshot, dataChecksums } from '../lib/postgres/snapshot.js';
import { renderHtml } from '../lib/monitor/report.js';
import { collectReport } from '../lib/ops/report.js';
import { freshDatabase, knexFor, pgClient, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';

const ROWS = 20_000;

/**
 * A writer that bypasses the sync trigger (session_replication_role = replica, as a logical-replication apply or a
 * careless bulk load does) corrupts rows the backfill has already copied; verify must find them, the mismatch
 * threshold must trip, and autoRollback must leave the schema and the data exactly as before the change.
 */
describe('monitor: injected inconsistency trips the mismatch threshold', function () {
  let url: string;
  let knex: Knex;
  let db: Db;

  before(async () => {
    url = await freshDatabase('monitor_rollback');
    knex = knexFor(url);
    db = new Db(knex);
    for (const t of ['people', 'pets']) {
      await knex.raw(`CREATE TABLE ${t} (id bigserial PRIMARY KEY, name text NOT NULL, email text)`);
      await knex.raw(`INSERT INTO ${t} (name, email) SELECT 'person ' || g, 'p' || g || '@example.com' FROM generate_series(1, ${ROWS}) g`);
      await knex.raw(`ANALYZE ${t}`);
    }
  });

  after(async () => {
    await knex?.destroy();
  });

  function project(table: string, autoRollback: boolean): ZeroDowntimeUmzug {
    const p = tempProject(`monitor-rb-${table}`);
    p.write(
      `2026.11.24T10.00.00.${table}-full-name.ts`,
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: '${table}', from: 'name', to: 'full_name' })] });
`,
    );
    return zeroDowntime({
      knex,
      cwd: p.dir,
      contract: { after: '1h' },
      backfill: { batchSize: 1000, adaptive: false, canary: false },
      monitor: { canary: false, sampleEvery: '100ms' },
      autoRollback,
      logger: silentLogger,
    });
  }

  /** Once the backfill has walked past id 10 000, rewrites full_name of ids 1–2 000 with the trigger off. */
  function injectInconsistency(umzug: ZeroDowntimeUmzug, table: string): { done: () => boolean } {
    let injected = false;
    umzug.engine.addBatchGuard(async (p) => {
      if (injected || p.rowsDone < 10_000) return;
      injected = true;
      const c = await pgClient(url, 'bypassing-writer');
      try {
        await c.query(`SET session_replication_role = replica`);
        await c.query(`UPDATE ${table} SET full_name = 'corrupted' WHERE id <= 2000`);
      } finally {
        await c.end();
      }
    });
    return { done: () => injected };
  }

  it('with autoRollback: reverts the change, leaving the schema and data exactly as before, and status red with the reason', async () => {
    const umzug = project('people', true);
    const schemaBefore = await db.withConnection((c) => schemaSnapshot(c, ['public']));
    const dataBefore = await db.withConnection((c) => dataChecksums(c, ['public']));
    const injection = injectInconsistency(umzug, 'people');
    const events: string[] = [];
    umzug.monitor.on((e) => events.push(e.type));

    const err = await umzug.up().then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(injection.done()).to.equal(true);
    expect(err, 'up must fail').to.not.equal(null);
    const cause = (err as Error & { cause?: unknown }).cause;
    expect(cause).to.be.instanceOf(ThresholdBreachedError);
    const breach = cause as ThresholdBreachedError;
    expect(breach.rolledBack).to.equal(true);
    expect(breach.message).to.match(/reverted by autoRollback/);
    expect(breach.message).to.include('found 2000 of 20000 rows (10.00 %) where the old and the new structure disagree');
    expect(breach.message).to.match(/session_replication_role/);
    expect(events).to.include.members(['breach', 'rolled-back']);

    // The schema (columns, triggers, functions, constraints, indexes) and every row: exactly as before.
    const schemaAfter = await db.withConnection((c) => schemaSnapshot(c, ['public']));
    const dataAfter = await db.withConnection((c) => dataChecksums(c, ['public']));
    expect(schemaAfter).to.deep.equal(schemaBefore);
    expect(dataAfter).to.deep.equal(dataBefore);
    expect(await umzug.engine.state.executedNames()).to.deep.equal([]);
    expect(await umzug.engine.state.getChange('2026.11.24T10.00.00.people-full-name.ts:expand', 0)).to.equal(null);

    // Status is red and says why, in words; the metrics saw the verify.
    const status = await umzug.status();
    expect(status.monitor!.health).to.equal('red');
    const open = status.monitor!.openBreaches.filter((b) => b.migration.includes('people'));
    expect(open).to.have.length(1);
    expect(open[0]!.threshold).to.equal('mismatch');
    expect(open[0]!.action).to.equal('rolled-back');
    const metrics = await umzug.monitor.metrics.text();
    expect(metrics).to.match(/umzug_zd_verify_consistency_ratio\{migration="[^"]*people[^"]*",change="0"\} 0\.9\b/);
    expect(metrics).to.match(/umzug_zd_auto_rollbacks_total\{[^}]*\} 1/);
    const html = renderHtml(await collectReport(umzug));
    expect(html).to.include('rolled-back');
    expect(html).to.include('found 2000 of 20000 rows');

    // Fixed (the bypassing writer does not come back): the next up runs the change through and status is green again.
    await umzug.up();
    expect(await umzug.engine.state.executedNames()).to.deep.equal(['2026.11.24T10.00.00.people-full-name.ts:expand']);
    const bad = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM people WHERE full_name IS DISTINCT FROM name`);
    expect(bad.rows[0]!.n).to.equal(0);
    const again = await umzug.status();
    expect(again.monitor!.openBreaches.filter((b) => b.migration.includes('people'))).to.deep.equal([]);
    await umzug.close();
  });

  it('without autoRollback: stops with the explanation, keeps the new column, and status red', async () => {
    const umzug = project('pets', false);
    injectInconsistency(umzug, 'pets');
    const err = await umzug.up().then(
      () => null,
      (e: unknown) => e as Error,
    );
    const cause = (err as Error & { cause?: unknown }).cause as ThresholdBreachedError;
    expect(cause).to.be.instanceOf(ThresholdBreachedError);
    expect(cause.rolledBack).to.equal(false);
    expect(cause.message).to.match(/Nothing was reverted \(autoRollback is off\)/);
    const cols = await knex.raw<{ rows: { column_name: string }[] }>(`SELECT column_name FROM information_schema.columns WHERE table_name = 'pets'`);
    expect(cols.rows.map((r) => r.column_name)).to.include('full_name');
    const status = await umzug.status();
    const open = status.monitor!.openBreaches.filter((b) => b.migration.includes('pets'));
    expect(open.map((b) => [b.threshold, b.action])).to.deep.equal([['mismatch', 'stopped']]);
    expect(status.monitor!.health).to.equal('red');
    await umzug.close();
  });

  it('status turns red for a backfill whose process stopped reporting an hour ago (no monitor alive to tell)', async () => {
    const umzug = project('people', false);
    try {
      // A backfill left half done by a process that died two hours ago.
      await knex.raw(
        `INSERT INTO zero_downtime.backfills (migration, change_index, phase, rows_done, total_estimate, done, updated_at)
         VALUES ('2026.11.20T00.00.00.gone.ts:expand', 0, 'expand', 500, 2000, false, now() - interval '2 hours')`,
      );
      const status = await umzug.status();
      const stalled = status.monitor!.openBreaches.filter((b) => b.threshold === 'no-progress');
      expect(stalled).to.have.length(1);
      expect(stalled[0]!.message).to.match(/^the backfill of 2026\.11\.20T00\.00\.00\.gone\.ts:expand change #1 has not advanced for 2h 0m, since .* \(25\.0 % done\); the limit is 1h 0m\./);
      expect(status.monitor!.health).to.equal('red');
    } finally {
      await knex.raw(`DELETE FROM zero_downtime.backfills WHERE migration = '2026.11.20T00.00.00.gone.ts:expand'`);
      await umzug.close();
    }
  });
});
