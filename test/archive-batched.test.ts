import { expect } from 'chai';
import type { Knex } from 'knex';
import { changeColumnType, Db, deriveColumn, dropColumn, renameColumn, setNotNull, zeroDowntime } from '../lib/index.js';
import type { CatalogSnapshot } from '../lib/postgres/catalog.js';
import { readCatalog } from '../lib/postgres/catalog.js';
import type { Change, PhasePlan } from '../lib/migration.js';
import type { EngineEvent } from '../lib/runner.js';
import type { UmzugCLI } from 'umzug';
import { createCli } from '../lib/cli/cli.js';
import { addBackfillAction } from '../lib/cli/backfill.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { startLoop, type LoopWriter } from './support/column-writers.js';
import { expectExactRoundTrip, takeState } from './support/db-state.js';

const ROWS = 8_000;
type BackfillConfig = Record<string, unknown>;
const FAST: BackfillConfig = { batchSize: 500, adaptive: false, chunkRows: 5000, canary: false };

const statementsOf = (p: PhasePlan) => [...p.steps, ...(p.afterBackfill ?? [])].flatMap((s) => s.statements.map((x) => x.text));

describe('column archives filled in batches; emergency rollback flags', function () {
  this.timeout(300_000);
  let url: string;
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ url, knex, db } = await openTestDatabase('arch_batch'));
  });
  after(() => knex?.destroy());
  const q = async <R>(sql: string, bindings: readonly (string | number)[] = []) => (await knex.raw<{ rows: R[] }>(sql, bindings)).rows;

  const project = (name: string, changes: string, backfill: BackfillConfig = FAST) => {
    const p = tempProject(name);
    p.write(`001.${name}.ts`, `import { defineMigration, dropColumn, renameColumn, changeColumnType } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [${changes}] });\n`);
    return { dir: p.dir, backfill };
  };
  const open = (p: { dir: string; backfill: BackfillConfig }) =>
    zeroDowntime({ knex, cwd: p.dir, contract: { after: 0 }, logger: silentLogger, backfill: p.backfill as Parameters<typeof zeroDowntime>[0]['backfill'] });

  it('no contract or undo statement of a column change reads the whole table (no INSERT … SELECT into an archive, no count(*))', async () => {
    await knex.raw(`CREATE TABLE plan_t (id int PRIMARY KEY, a text, b int, c text)`);
    const t = { schema: 'public', name: 'plan_t' };
    const snapshot: CatalogSnapshot = await db.withConnection((c) => readCatalog(c, [t]));
    const ctx = { defaultSchema: 'public', stateSchema: 'zero_downtime' };
    // [change, whether its `down` gives every value back exactly]
    const changes: [Change, boolean][] = [
      [dropColumn({ table: 'plan_t', column: 'a' }), false],
      [renameColumn({ table: 'plan_t', from: 'a', to: 'a2' }), true],
      [changeColumnType({ table: 'plan_t', column: 'b', type: 'bigint' }), true],
      [changeColumnType({ table: 'plan_t', column: 'c', type: 'integer' }), false],
      [deriveColumn({ table: 'plan_t', column: { name: 'ac', type: 'text' }, from: ['a', 'c'], up: `a || c`, down: { a: `ac`, c: `''` }, dropSources: true }), false],
    ];
    for (const [ch, exact] of changes) {
      const d = ch.describe(snapshot, ctx);
      for (const [phase, plan] of [['contract', d.contract], ['undoContract', d.undoContract], ['undoExpand', d.undoExpand]] as const) {
        for (const text of statementsOf(plan)) {
          expect(text, `${ch.kind} ${phase}`).not.to.match(/INSERT INTO [^;]*zd_arch[^;]*\bSELECT\b[^;]*\bFROM\s+"public"\."plan_t"/is);
          expect(text, `${ch.kind} ${phase}`).not.to.match(/count\(\*\)/i);
        }
      }
      // The archive is filled by a copy backfill into it, keyed by the primary key; the restore joins it per batch.
      expect(d.contract.backfill?.copy?.into.name, ch.kind).to.match(/^zd_arch_/);
      expect(d.contract.backfill?.copy?.mode).to.equal('insert');
      // …unless `down` gives every value back exactly (a rename, integer → bigint): then the undo refills from the
      // live column alone, as the forward backfill does, with no archive to join.
      if (exact) expect(d.undoContract.backfill?.join, ch.kind).to.equal(undefined);
      else expect(d.undoContract.backfill?.join?.table.name, ch.kind).to.equal(d.contract.backfill?.copy?.into.name);
      expect(JSON.stringify(d.undoContract.backfill?.set), ch.kind).not.to.match(/FROM \\"zero_downtime\\"/);
    }
    // setNotNull's expand sets the default under ACCESS EXCLUSIVE: no scan of the table may share that transaction.
    // The keys of the rows it fills are archived by the backfill's own batches.
    const nn = setNotNull({ table: 'plan_t', column: 'c', default: 'x' }).describe(snapshot, ctx);
    const withDefault = nn.expand.steps.find((x) => x.id === 'default-and-archive')!;
    expect(withDefault.statements.map((x) => x.text).join(';\n')).to.match(/SET DEFAULT/).and.not.match(/\bFROM\s+"public"\."plan_t"/);
    expect(nn.expand.backfill?.archiveKeys?.into.name).to.match(/^zd_arch_nulls_/);
  });

  it('the contract fills the archive in batches while writers change, insert, delete and re-key rows: it holds each row as it was at the drop, and down restores it', async () => {
    await knex.raw(`CREATE TABLE ledger (id bigint PRIMARY KEY, code text, shadow text, note text)`);
    await knex.raw(`INSERT INTO ledger SELECT g, 'c' || g, 'c' || g, 'n' FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`CREATE SEQUENCE ledger_ids START ${ROWS + 1}`);
    await knex.raw('ANALYZE ledger');
    const umzug = open(project('drop-code', `dropColumn({ table: 'ledger', column: 'code' })`, { batchSize: 250, adaptive: false, chunkRows: 2500, pause: '10ms', canary: false }));
    const events: EngineEvent[] = [];
    umzug.engine.subscribe((e) => events.push(e));
    await umzug.up();
    const pick = () => 1 + Math.floor(Math.random() * ROWS * 1.1);
    // Every statement names `code`: once the contract dropped it, they all fail, so the table stays as it was at the drop.
    const writer = (label: string) =>
      startLoop(url, label, async (c, i) => {
        const v = `${label}-${i}`;
        const r = Math.random();
        if (r < 0.3) await c.query(`INSERT INTO ledger (id, code, shadow) VALUES (nextval('ledger_ids'), $1, $1)`, [v]);
        else if (r < 0.7) await c.query(`UPDATE ledger SET code = $1, shadow = $1 WHERE id = $2`, [v, pick()]);
        else if (r < 0.85) await c.query(`UPDATE ledger SET note = $1 WHERE id = $2 AND code IS NOT DISTINCT FROM code`, [v, pick()]);
        else if (r < 0.97) await c.query(`DELETE FROM ledger WHERE id = $1 AND code IS NOT DISTINCT FROM code`, [pick()]);
        else await c.query(`UPDATE ledger SET id = nextval('ledger_ids'), code = $1, shadow = $1 WHERE id = $2`, [v, pick()]);
      });
    const writers: LoopWriter[] = [await writer('w0'), await writer('w1'), await writer('w2')];
    let opsDuring = 0;
    try {
      await new Promise((r) => setTimeout(r, 200));
      const opsBefore = writers.reduce((n, w) => n + w.ops(), 0);
      await umzug.up();
      opsDuring = writers.reduce((n, w) => n + w.ops(), 0) - opsBefore;
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
    }
    const errors = writers.flatMap((w) => w.errors).filter((e) => !/column "code" (of relation "ledger" )?does not exist/.test(e));
    expect(errors).to.deep.equal([]);
    expect(opsDuring, 'writers ran while the archive filled').to.be.greaterThan(100);

    const fill = events.flatMap((e) => (e.type === 'backfill' && e.progress.phase === 'contract' ? [e.progress] : []));
    expect(fill.length, 'archive fill batches reported').to.be.greaterThan(ROWS / 250);
    expect(fill.at(-1)!.batches).to.be.greaterThan(ROWS / 250 - 5);
    const [row] = await q<{ done: boolean; rows_done: string }>(`SELECT done, rows_done::text FROM zero_downtime.backfills WHERE phase = 'contract' AND migration LIKE '%drop-code%'`);
    expect(row!.done).to.equal(true);
    expect(Number(row!.rows_done)).to.be.greaterThan(ROWS * 0.9);
    expect(await q(`SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger'::regclass AND tgname LIKE 'zd_archfill%'`), 'the fill trigger ends with the drop').to.deep.equal([]);

    const [archive] = await q<{ archive: string }>(`SELECT archive FROM zero_downtime.column_archives WHERE source_table = 'public.ledger'`);
    const [diff] = await q<{ missing: number; extra: number; wrong: number; n: number }>(
      `SELECT count(*) FILTER (WHERE a._zd_k0 IS NULL)::int AS missing, count(*) FILTER (WHERE l.id IS NULL)::int AS extra,
              count(*) FILTER (WHERE a._zd_v0 IS DISTINCT FROM l.shadow)::int AS wrong, count(*)::int AS n
         FROM ledger l FULL JOIN zero_downtime.${archive!.archive} a ON a._zd_k0 = l.id`,
    );
    expect(diff).to.deep.equal({ missing: 0, extra: 0, wrong: 0, n: diff!.n });

    await umzug.down();
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM ledger WHERE code IS DISTINCT FROM shadow`))[0]!.n).to.equal(0);
    await umzug.close();
  });

  it('a contract stopped while it fills the archive resumes where it stopped; writes made in between are in the archive; down before the resume cleans up', async () => {
    for (const t of ['stops', 'stops2']) {
      await knex.raw(`CREATE TABLE ${t} (id int PRIMARY KEY, code text, shadow text)`);
      await knex.raw(`INSERT INTO ${t} SELECT g, 'c' || g, 'c' || g FROM generate_series(1, ${ROWS}) g`);
    }
    const config: BackfillConfig = { batchSize: 200, adaptive: false, chunkRows: 2000, pause: '5ms', canary: false };
    const stopMidFill = async (umzug: ReturnType<typeof open>) => {
      const controller = new AbortController();
      const unsubscribe = umzug.engine.subscribe((e) => {
        if (e.type === 'backfill' && e.progress.phase === 'contract' && e.progress.rowsDone >= 3000) controller.abort();
      });
      const err = await umzug.engine.withSignal(controller.signal, () => umzug.up()).then(
        () => null,
        (e: unknown) => e as Error,
      );
      unsubscribe();
      return err;
    };
    const umzug = open(project('stop-contract', `dropColumn({ table: 'stops', column: 'code' })`, config));
    await umzug.up();
    const err = await stopMidFill(umzug);
    expect(String(err), 'the contract stops after a batch').to.match(/backfill stopped after \d+ rows; progress is saved/);
    const [mid] = await q<{ done: boolean; rows_done: string }>(`SELECT done, rows_done::text FROM zero_downtime.backfills WHERE phase = 'contract' AND migration LIKE '%stop-contract%'`);
    expect(mid!.done).to.equal(false);
    const stoppedAt = Number(mid!.rows_done);
    expect(stoppedAt).to.be.within(3000, ROWS - 1);
    expect((await q(`SELECT 1 FROM information_schema.columns WHERE table_name = 'stops' AND column_name = 'code'`)).length, 'the column is still there').to.equal(1);
    // Writes between the stop and the resume, on both sides of where the fill stopped: the trigger records them.
    await knex.raw(`UPDATE stops SET code = 'late' || id, shadow = 'late' || id WHERE id % 97 = 0`);
    await knex.raw(`DELETE FROM stops WHERE id % 101 = 0`);
    await knex.raw(`INSERT INTO stops SELECT g, 'new' || g, 'new' || g FROM generate_series(${ROWS + 1}, ${ROWS + 50}) g`);

    const batches: number[] = [];
    umzug.engine.subscribe((e) => {
      if (e.type === 'backfill' && e.progress.phase === 'contract') batches.push(e.progress.rowsDone);
    });
    await umzug.up();
    expect(batches[0], 'resumed, not restarted').to.be.greaterThan(stoppedAt);
    const [archive] = await q<{ archive: string }>(`SELECT archive FROM zero_downtime.column_archives WHERE source_table = 'public.stops'`);
    await umzug.down();
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM stops WHERE code IS DISTINCT FROM shadow`))[0]!.n).to.equal(0);
    expect(await q(`SELECT to_regclass('zero_downtime.${archive!.archive}') AS r`)).to.deep.equal([{ r: null }]);
    await umzug.close();

    // Down while the contract is half done: the expand is undone, and the fill's trigger and partial archive go too.
    const other = open(project('stop-contract-2', `dropColumn({ table: 'stops2', column: 'code' })`, config));
    await other.up();
    expect(String(await stopMidFill(other))).to.match(/backfill stopped/);
    expect((await q(`SELECT tgname FROM pg_trigger WHERE tgrelid = 'stops2'::regclass AND tgname LIKE 'zd_archfill%'`)).length).to.equal(1);
    await other.down();
    expect(await q(`SELECT tgname FROM pg_trigger WHERE tgrelid = 'stops2'::regclass AND tgname LIKE 'zd_archfill%'`)).to.deep.equal([]);
    expect(await q(`SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'zero_downtime' AND c.relname LIKE 'zd_arch_drop%stops2%'`)).to.deep.equal([]);
    await knex.raw(`UPDATE stops2 SET code = 'x' WHERE id = 1`);
    await other.close();
  });

  it('up → down → up of a rename and a drop on one table gives back schema and every row exactly, the archives filled in batches', async () => {
    await knex.raw(`CREATE SCHEMA rt`);
    await knex.raw(`CREATE TABLE rt.people (id int PRIMARY KEY, full_name text NOT NULL, legacy text DEFAULT 'l', age int)`);
    await knex.raw(`CREATE INDEX people_name ON rt.people (full_name)`);
    await knex.raw(`INSERT INTO rt.people SELECT g, 'p' || g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'l' || g END, g % 90 FROM generate_series(1, 3000) g`);
    const umzug = open(
      project(
        'rt',
        `renameColumn({ table: { schema: 'rt', name: 'people' }, from: 'full_name', to: 'display_name' }), dropColumn({ table: { schema: 'rt', name: 'people' }, column: 'legacy' })`,
        { batchSize: 200, adaptive: false, chunkRows: 1000, canary: false },
      ),
    );
    const fills = new Map<string, number>();
    umzug.engine.subscribe((e) => {
      if (e.type === 'backfill' && e.progress.phase === 'contract') fills.set(`${e.progress.changeIndex}`, e.progress.batches);
    });
    await expectExactRoundTrip(umzug, () => takeState(db, ['rt']), {
      contracted: async () => {
        expect(await q(`SELECT kind, rows::text FROM zero_downtime.column_archives WHERE source_table = 'rt.people' ORDER BY kind`)).to.deep.equal([
          { kind: 'drop-column', rows: '3000' },
          { kind: 'rename', rows: '3000' },
        ]);
      },
    });
    expect(fills.get('0')).to.be.at.least(15);
    expect(fills.get('1')).to.be.at.least(15);
    await umzug.close();
  });

  it('`down --canary off --pace off` runs the restore without the canary probe; --pace 0.25 fixes the pace; bad values are refused; --help documents both', async () => {
    await knex.raw(`CREATE TABLE emerg (id int PRIMARY KEY, title text)`);
    await knex.raw(`INSERT INTO emerg SELECT g, 't' || g FROM generate_series(1, 8000) g`);
    // The canary is on (the default, unless the test environment turned it off).
    const umzug = open(project('emerg', `renameColumn({ table: 'emerg', from: 'title', to: 'name' })`, { batchSize: 200, adaptive: false, chunkRows: 2000, canary: { budget: 1.5 } }));
    // A parser runs once: a fresh one per command, as the bin does.
    const cliOnce = () =>
      createCli(umzug, { toolFileName: 'umzug', toolDescription: 'test' }) as unknown as {
        executeWithoutErrorHandling(args: string[]): Promise<void>;
        getAction(name: string): { renderHelpText(): string };
      };
    const cli = { executeWithoutErrorHandling: (args: string[]) => cliOnce().executeWithoutErrorHandling(args), getAction: (name: string) => cliOnce().getAction(name) };
    // Both canaries (the backfill's pacer, the monitor's threshold) read one row by key on a connection of their own.
    // A pooled connection keeps its last query's text when idle: only probes started during the command count.
    const watchProbes = () => {
      let seen = 0;
      let running = true;
      const loop = (async () => {
        const [{ since }] = (await q<{ since: string }>(`SELECT now()::text AS since`)) as [{ since: string }];
        while (running) {
          const r = await q<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND (query LIKE 'WITH _zd_canary AS (SELECT * FROM "public"."emerg" WHERE%' OR application_name = 'umzug-zero-downtime canary') AND query_start > ?::timestamptz`,
            [since],
          );
          seen += r[0]!.n;
          await new Promise((res) => setTimeout(res, 20));
        }
      })();
      return async () => {
        running = false;
        await loop;
        return seen;
      };
    };
    const events: EngineEvent[] = [];
    umzug.engine.subscribe((e) => events.push(e));
    const throttles = (phase: string) => events.flatMap((e) => (e.type === 'backfill-throttle' && e.phase === phase ? [e.throttle] : []));

    let stop = watchProbes();
    await cli.executeWithoutErrorHandling(['up']);
    await cli.executeWithoutErrorHandling(['up']);
    expect(await stop(), 'control: with the default settings the canary probes').to.be.greaterThan(0);

    stop = watchProbes();
    await cli.executeWithoutErrorHandling(['down', '--canary', 'off', '--pace', 'off']);
    expect(await stop(), 'no canary probe during the emergency down').to.equal(0);
    expect(throttles('undoContract').map((t) => t.busyFraction)).to.deep.equal([1]);
    const [restored] = await q<{ n: number }>(`SELECT count(*)::int AS n FROM emerg WHERE title IS DISTINCT FROM name`);
    expect(restored!.n).to.equal(0);

    events.length = 0;
    await cli.executeWithoutErrorHandling(['up', '--canary', 'off', '--pace', '0.25']);
    expect(throttles('contract').map((t) => t.busyFraction)).to.deep.equal([0.25]);
    // The overrides last for that command only.
    expect(umzug.engine.options.backfill.canary).not.to.equal(false);

    const bad = await cli.executeWithoutErrorHandling(['down', '--pace', '2']).then(() => null, (e: Error) => e);
    expect(String(bad)).to.match(/--pace must be a fraction in \(0, 1\].*Nothing was run/);
    const bad2 = await cli.executeWithoutErrorHandling(['down', '--canary', 'maybe']).then(() => null, (e: Error) => e);
    expect(String(bad2)).to.match(/--canary must be on or off/);
    expect(await q(`SELECT 1 FROM information_schema.columns WHERE table_name = 'emerg' AND column_name = 'title'`), 'a refused command changed nothing').to.deep.equal([]);

    for (const action of ['up', 'down']) {
      const help = cli.getAction(action).renderHelpText();
      expect(help).to.match(/--canary/).and.to.match(/--pace/).and.to.match(/emergency rollback/);
    }
    const withBackfill = cliOnce() as unknown as UmzugCLI & { getAction(name: string): { renderHelpText(): string } };
    addBackfillAction(withBackfill, umzug);
    expect(withBackfill.getAction('backfill').renderHelpText()).to.match(/--canary/).and.to.match(/--pace/);
    await umzug.close();
  });
});
