// The contract's query gate on a server with pg_stat_statements: the monitor's canary is not a user of the old
// column; the baseline moves to the read flag's flip; a role without pg_read_all_stats is told what it cannot see;
// an extension loaded but not installed is detected once per command and said so.
import { expect } from 'chai';
import type { Knex } from 'knex';
import pg from 'pg';
import { zeroDowntime, type ZeroDowntimeUmzug } from '../lib/index.js';
import { LatencyProbe } from '../lib/monitor/probe.js';
import { queryUsers, type QueryUsersReport } from '../lib/ops/queries.js';
import { formatStatus } from '../lib/ops/status.js';
import { keyProbeSql } from '../lib/postgres/batch-sql.js';
import { knexFor, silentLogger, testDatabaseName } from './support/pg.js';
import { startStatementsServer, type StatementsServer } from './support/pgss-server.js';
import { tempProject } from './support/project.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const MIGRATION = '2099.01.01T00.00.01.users-full-name.ts';
const rename = (extra = '') => `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name'${extra} })] });
`;
/** Two looks within a second share one reading (queries.ts): wait that out between looks. */
const LOOK = 1100;

describe('queries: the contract gate on pg_stat_statements, what it counts and what it says', function () {
  this.timeout(120_000);
  let server: StatementsServer;
  let admin: pg.Client;
  const open: { knex: Knex[]; umzug: ZeroDowntimeUmzug[] } = { knex: [], umzug: [] };

  before(async () => {
    server = await startStatementsServer();
    admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
  });
  afterEach(async () => {
    for (const u of open.umzug.splice(0)) await u.close().catch(() => undefined);
    for (const k of open.knex.splice(0)) await k.destroy().catch(() => undefined);
  });
  after(async () => {
    await admin?.end();
    await server?.stop();
  });

  /** A database of this run's own on the throwaway server, with a users table of 20 rows. */
  async function database(name: string, o: { extension?: boolean; owner?: string } = {}): Promise<string> {
    const db = testDatabaseName(name);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(db)}${o.owner ? ` OWNER ${pg.escapeIdentifier(o.owner)}` : ''}`);
    const url = server.url.replace(/\/postgres$/, `/${db}`);
    const su = new pg.Client({ connectionString: url });
    await su.connect();
    try {
      if (o.extension !== false) await su.query('CREATE EXTENSION pg_stat_statements');
    } finally {
      await su.end();
    }
    return url;
  }

  function project(knex: Knex, migration = rename(), options: { requireNoQueries?: boolean | 'auto'; relative?: false } = {}): ZeroDowntimeUmzug {
    const p = tempProject('queries-pgss');
    p.write(MIGRATION, migration);
    return projectIn(p.dir, knex, options);
  }

  function projectIn(dir: string, knex: Knex, options: { requireNoQueries?: boolean | 'auto'; relative?: false } = {}): ZeroDowntimeUmzug {
    const u = zeroDowntime({
      knex,
      cwd: dir,
      logger: silentLogger,
      contract: { after: '1h', ...(options.requireNoQueries !== undefined ? { requireNoQueries: options.requireNoQueries } : {}) },
      monitor: { canary: false, ...(options.relative === false ? { relative: false as const } : {}) },
      backfill: { canary: false },
    });
    open.umzug.push(u);
    return u;
  }

  const track = (knex: Knex) => (open.knex.push(knex), knex);

  async function usersTable(knex: Knex): Promise<void> {
    await knex.raw('CREATE TABLE users (id int PRIMARY KEY, name text)');
    await knex.raw(`INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20) g`);
  }

  /** The application: `sql` run `times` times with key parameters, on a connection of its own. */
  async function runApp(url: string, sql: string, times: number, user?: string): Promise<void> {
    const c = new pg.Client({ connectionString: user ? url.replace('postgres@', `${user}@`) : url, application_name: 'the-app' });
    await c.connect();
    try {
      for (let i = 0; i < times; i++) await c.query(sql, [1 + i]);
    } finally {
      await c.end();
    }
  }

  const queries = async (u: ZeroDowntimeUmzug): Promise<QueryUsersReport> => (await u.status()).migrations[0]!.queries!;

  it("the monitor's canary (`SELECT * FROM users WHERE id = $1`, run after the cutover) is not a user; the application's identical read is, with its own calls only", async () => {
    const url = await database('q18_canary');
    const knex = track(knexFor(url, 4));
    await usersTable(knex);
    const umzug = project(knex);
    await umzug.up();
    const probeSql = keyProbeSql({ schema: 'public', name: 'users' }, [{ name: 'id', type: 'integer' }]);
    // What the application runs: the probe's read without our CTE.
    const appSql = 'SELECT * FROM "public"."users" WHERE ("id") = (CAST($1 AS integer))';
    expect(probeSql).to.include(appSql);
    // The probe as the monitor starts it for a backfill of users (a `verify --repair` after the cutover, say).
    const probe = new LatencyProbe(knex, { label: 'a read of one users row by key', sql: probeSql, params: [[1], [2], [3]] }, { intervalMs: 5, windowMs: 2000, baselineSamples: 5, timeoutMs: 2000 });
    expect(await probe.start()).to.equal(true);
    await sleep(400);
    await probe.stop();
    const entries = await knex.raw<{ rows: { query: string; calls: string }[] }>(`SELECT query, calls::text FROM pg_stat_statements WHERE query LIKE '%users%' AND query LIKE '%_zd_canary%'`);
    expect(entries.rows, 'the canary has an entry of its own').to.have.length(1);
    expect(Number(entries.rows[0]!.calls)).to.be.greaterThan(5);

    const quiet = await queries(umzug);
    expect(quiet.available).to.equal(true);
    expect(quiet.statements, JSON.stringify(quiet, null, 2)).to.deep.equal([]);

    // The application runs the very same text: it is a user, and only its own 7 calls count.
    await runApp(url, appSql, 7);
    await sleep(LOOK);
    const seen = await queries(umzug);
    expect(seen.statements.map((s) => [s.query, s.callsSinceCutover, s.removed])).to.deep.equal([[appSql, 7, ['users.name']]]);
    expect((await umzug.gate((await umzug.entries()).find((e) => e.phase === 'contract')!)).reasons.join('\n')).to.include('still used since the cutover (pg_stat_statements): users.name by "SELECT * FROM');
  });

  it("takes the baseline again when the contract's read flag reaches 100 %: reads of the old column before the flip no longer count", async () => {
    const url = await database('q18_flag');
    const knex = track(knexFor(url, 4));
    await usersTable(knex);
    const umzug = project(knex, rename(", readFlag: 'users-full-name'"));
    await umzug.up();
    const old = 'SELECT id, name FROM users WHERE id = $1';
    // Until the flip, the old version reads the old column on purpose; it is counted from the expand's end.
    await runApp(url, old, 5);
    const before = await queries(umzug);
    expect(before.cutover).to.equal('expand finished');
    expect(before.statements.map((s) => [s.query, s.callsSinceCutover])).to.deep.equal([[old, 5]]);

    await umzug.flags.set('users-full-name', 100);
    const flipped = (await umzug.flags.get('users-full-name'))!.fullSince!;
    await sleep(LOOK);
    const after = await queries(umzug);
    expect(after.cutover).to.equal('read flag "users-full-name" at 100 %');
    expect(new Date(after.since!).getTime()).to.be.at.least(flipped.getTime());
    expect(after.statements, 'the reads before the flip').to.deep.equal([]);
    const baselines = await knex.raw<{ rows: { cutover: string }[] }>('SELECT cutover FROM zero_downtime.query_baselines');
    expect(baselines.rows.map((r) => r.cutover)).to.deep.equal(['read flag "users-full-name" at 100 %']);

    // An old instance still reading after the flip is a user again, counted from the flip.
    await runApp(url, old, 3);
    await sleep(LOOK);
    expect((await queries(umzug)).statements.map((s) => [s.query, s.callsSinceCutover, s.withinWindow])).to.deep.equal([[old, 3, true]]);
  });

  it('as a role that is not a superuser: without pg_read_all_stats it says what it cannot see (and `true` keeps the gate closed); with it, it sees the application', async () => {
    await admin.query(`DO $$
      BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'zdt18_migrator') THEN CREATE ROLE zdt18_migrator LOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'zdt18_app') THEN CREATE ROLE zdt18_app LOGIN; END IF;
      END $$`);
    const url = await database('q18_roles', { owner: 'zdt18_migrator' });
    const asMigrator = url.replace('postgres@', 'zdt18_migrator@');
    const knex = track(knexFor(asMigrator, 4));
    expect((await knex.raw<{ rows: { su: boolean }[] }>('SELECT rolsuper AS su FROM pg_roles WHERE rolname = current_user')).rows[0]!.su).to.equal(false);
    await usersTable(knex);
    await knex.raw('GRANT SELECT ON users TO zdt18_app');
    const umzug = project(knex);
    await umzug.up();
    const old = 'SELECT id, name FROM users WHERE id = $1';
    await runApp(url, old, 4, 'zdt18_app');

    const blind = await queries(umzug);
    expect(blind.available).to.equal(true);
    expect(blind.statements).to.deep.equal([]);
    expect(blind.hidden).to.be.at.least(1);
    expect(blind.note).to.match(
      /^\d+ statements? of other roles (is|are) hidden from role zdt18_migrator \(<insufficient privilege>\), so whether (it uses|they use) users\.name cannot be seen: GRANT pg_read_all_stats TO "zdt18_migrator" to see them$/,
    );
    expect(formatStatus(await umzug.status())).to.include('hidden from role zdt18_migrator (<insufficient privilege>)');
    const contract = (await umzug.entries()).find((e) => e.phase === 'contract')!;
    // 'auto': the note is told, the gate is as without pg_stat_statements.
    expect((await umzug.gate(contract)).reasons.join('\n')).to.not.include('pg_stat_statements');
    const strict = project(knex, rename(), { requireNoQueries: true });
    const strictContract = (await strict.entries()).find((e) => e.phase === 'contract')!;
    expect((await strict.gate(strictContract)).reasons.filter((r) => r.includes('<insufficient privilege>'))).to.deep.equal([`${blind.note} (contract.requireNoQueries: true)`]);

    await admin.query('GRANT pg_read_all_stats TO zdt18_migrator');
    try {
      await sleep(LOOK);
      const seeing = await queries(umzug);
      expect(seeing.hidden).to.equal(undefined);
      expect(seeing.note).to.equal(undefined);
      // Its entry was hidden when the baseline was taken after the expand, so all its calls count: it ran after.
      expect(seeing.statements.map((s) => [s.query, s.role, s.callsSinceCutover])).to.deep.equal([[old, 'zdt18_app', 4]]);
    } finally {
      await admin.query('REVOKE pg_read_all_stats FROM zdt18_migrator');
    }
  });

  it('loaded but not installed in this database: status (text and JSON) says so and what to run; one detection per command for all its contracts', async () => {
    const url = await database('q18_not_installed', { extension: false });
    const knex = track(knexFor(url, 4));
    await usersTable(knex);
    await knex.raw('CREATE TABLE orders (id int PRIMARY KEY, note text)');
    const p = tempProject('queries-pgss-two');
    p.write(MIGRATION, rename());
    p.write(
      '2099.01.01T00.00.02.orders-memo.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'orders', from: 'note', to: 'memo' })] });
`,
    );
    await projectIn(p.dir, knex, { relative: false }).up();

    // A new command (a fresh project) looks at both contracts: it asks the catalog about pg_stat_statements once.
    // (Through the op itself: under tsx the gate's `import()` of ops/queries.ts is a second copy of the module, with a
    // cache of its own, which the built package does not have.)
    const status = projectIn(p.dir, knex, { relative: false });
    const detections: string[] = [];
    const query = status.db.query.bind(status.db);
    status.db.query = ((text: string, values?: readonly unknown[]) => {
      if (text.includes("extname = 'pg_stat_statements'")) detections.push(text);
      return query(text, values as never);
    }) as typeof status.db.query;
    const contracts = (await status.entries()).filter((e) => e.phase === 'contract');
    expect(contracts).to.have.length(2);
    for (const c of contracts) expect((await queryUsers(status, c))!.available).to.equal(false);
    expect(detections).to.have.length(1);
    const report = await status.status();
    const notes = report.migrations.map((m) => m.queries?.note);
    expect(notes).to.deep.equal([
      'cannot see who still uses users.name: pg_stat_statements is loaded but not installed in this database — run CREATE EXTENSION pg_stat_statements',
      'cannot see who still uses orders.note: pg_stat_statements is loaded but not installed in this database — run CREATE EXTENSION pg_stat_statements',
    ]);
    // What `status --json` prints is this report as JSON.
    const json = JSON.parse(JSON.stringify(report)) as typeof report;
    expect(json.migrations[0]!.queries).to.deep.include({ available: false, enforced: false, statements: [], note: notes[0] });
    expect(report.migrations.map((m) => m.contract)).to.deep.equal(['waiting', 'waiting']); // the safety window, not the queries
    expect(report.migrations[0]!.waitingFor.join('\n')).to.not.include('pg_stat_statements');
    const text = formatStatus(report);
    expect(text).to.include('Who still uses what the contracts remove, from the database (pg_stat_statements; ! = within the safety window):');
    expect(text).to.include(`    ${notes[0]}`);
    expect(text).to.include(`    ${notes[1]}`);
  });
});
