import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { freshDatabase, knexFor, pgClient } from './support/pg.js';
import { schemaSnapshot } from '../lib/postgres/snapshot.js';
import type { PlanReport } from '../lib/ops/plan.js';
import type { StatusReport } from '../lib/ops/status.js';
import type { VerifyReport } from '../lib/ops/verify.js';
import type { RehearsalReport } from '../lib/ops/rehearse.js';
import { cliProject, jsonOut, type CliProject } from './cli-support.js';

const ROWS = 200;

describe('the `umzug` bin in a TypeScript project: create → plan → up → status → verify → down → rehearse', function () {
  this.timeout(90_000);
  let url: string;
  let knex: Knex;
  let p: CliProject;

  const exists = async (sql: string) => ((await knex.raw(sql)) as { rows: { ok: boolean }[] }).rows[0]!.ok;
  const publicSchema = async () => {
    const c = await pgClient(url);
    try {
      return await schemaSnapshot({ query: (t, v) => c.query(t, v as unknown[]) as never }, ['public']);
    } finally {
      await c.end();
    }
  };

  before(async () => {
    url = await freshDatabase('cli_ts');
    knex = knexFor(url, 2);
    await knex.raw(`CREATE TABLE users (id int PRIMARY KEY, first_name text, last_name text)`);
    await knex.raw(`INSERT INTO users SELECT g, 'first' || g, 'last' || g FROM generate_series(1, ${ROWS}) g`);
    p = cliProject('cli-ts', { type: 'module' }, url);
    p.write('tsconfig.json', JSON.stringify({ compilerOptions: { module: 'NodeNext', strict: true } }));
    p.write(
      'umzug.config.ts',
      `import type { ZeroDowntimeConfig } from 'umzug-zero-downtime';
const config: ZeroDowntimeConfig = {
  knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 } },
  contract: { after: 0 },
  logger: null,
  backfill: { canary: false },
  monitor: { canary: false },
};
export default config;
`,
    );
  });
  after(() => knex?.destroy());

  it('create --template writes typed .ts migrations through Umzug’s create, without touching the database; bad parameters are refused by name', async () => {
    const a = await p.run(['create', '--name', 'users-email', '--template', 'add-column', '--table', 'users', '--column', 'email', '--type', 'text', '--json']);
    expect(a.code, a.stderr).to.equal(0);
    const made = jsonOut<{ created: string[]; placeholders: string[] }>(a);
    expect(made.created).to.have.length(1);
    expect(made.created[0]).to.match(/migrations\/[\d.T]+\.users-email\.ts$/);
    expect(made.placeholders).to.deep.equal([]);
    const b = await p.run(['create', '--name', 'users-surname', '--template', 'rename-column', '--table', 'users', '--from', 'last_name', '--to', 'surname']);
    expect(b.code, b.stderr).to.equal(0);
    const files = p.files('migrations');
    expect(files).to.have.length(2);
    expect(files[0]).to.match(/^\d{4}\.\d\d\.\d\dT\d\d\.\d\d\.\d\d\.users-email\.ts$/);
    const email = readFileSync(path.join(p.dir, 'migrations', files[0]!), 'utf8');
    expect(email).to.include(`import { defineMigration, addColumn } from 'umzug-zero-downtime';`);
    expect(email).to.include(`table: 'users'`).and.include(`name: 'email'`).and.include(`type: 'text'`).and.not.include('TODO');
    expect(await exists(`SELECT to_regnamespace('zero_downtime') IS NULL AS ok`), 'create needs no state schema').to.equal(true);

    const before = p.files('migrations');
    const bad = await p.run(['create', '--name', 'fk', '--template', 'add-foreign-key', '--table', 'users', '--on-delete', 'explode']);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/--on-delete \(onDelete\) must be one of "NO ACTION", "RESTRICT", "CASCADE"/);
    const wrongFlag = await p.run(['create', '--name', 'idx', '--template', 'add-index', '--table', 'users', '--on-delete', 'CASCADE']);
    expect(wrongFlag.stderr).to.match(/--on-delete is not a parameter of template "add-index"/);
    const injected = await p.run(['create', '--name', 'col', '--template', 'add-column', '--table', 'users', '--column', 'x', '--type', 'int; drop table users']);
    expect(injected.stderr).to.match(/--type \(column\.type\) must be a PostgreSQL type name/);
    const byConstructor = await p.run(['create', '--name', 'col', '--template', 'add-column', '--table', 'users', '--column', 'x', '--type', 'int', '--not-null']);
    expect(byConstructor.code).to.equal(1);
    expect(byConstructor.stderr).to.match(/template "add-column": addColumn: .*default/);
    expect(p.files('migrations'), 'nothing written by refused creates').to.deep.equal(before);

    const pending = await p.run(['pending', '--json']);
    expect(jsonOut<{ name: string }[]>(pending).map((x) => x.name)).to.deep.equal(files.map((f) => `${f}:expand`));
  });

  it('create without --template is Umzug’s plain template, in the project’s format', async () => {
    const r = await p.run(['create', '--name', 'plain-noop', '--skip-verify', '--folder', path.join(p.dir, 'scratch')]);
    expect(r.code, r.stderr).to.equal(0);
    const [file] = p.files('scratch');
    expect(file).to.match(/plain-noop\.ts$/);
    expect(readFileSync(path.join(p.dir, 'scratch', file!), 'utf8')).to.include(`import type { MigrationFn } from 'umzug';`);
  });

  it('plan prints every statement with the lock PostgreSQL reports, and changes nothing', async () => {
    // Read-only commands before it made no state schema (an earlier version's would be dropped here); plan makes none.
    expect(await exists(`SELECT to_regnamespace('zero_downtime') IS NULL AS ok`), 'pending created nothing').to.equal(true);
    await knex.raw('DROP SCHEMA IF EXISTS zero_downtime CASCADE');
    const schemaBefore = await publicSchema();
    const r = await p.run(['plan', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const plan = jsonOut<PlanReport>(r);
    expect(plan.phases.map((x) => x.phase)).to.deep.equal(['expand', 'expand', 'contract', 'contract']);
    const [addCol, rename] = plan.phases;
    const addStmt = addCol!.changes[0]!.steps[0]!.statements[0]!;
    expect(addStmt.text).to.match(/ALTER TABLE "public"\."users" ADD COLUMN "email" text/);
    expect(addStmt.effects!.locks).to.deep.include({ relation: 'public.users', mode: 'AccessExclusiveLock' });
    expect(addStmt.lockSource).to.equal('isolated');
    expect(addStmt.effects!.rewrites, 'a nullable column without default: no rewrite').to.deep.equal([]);
    const renameStep = rename!.changes[0]!.steps[0]!;
    expect(renameStep.holds.map((l) => l.mode)).to.include.members(['AccessExclusiveLock', 'ShareRowExclusiveLock']);
    expect(rename!.changes[0]!.backfill!.sample!.effects!.locks).to.deep.include({ relation: 'public.users', mode: 'RowExclusiveLock' });
    expect(rename!.changes[0]!.verify!.table).to.equal('public.users');
    expect(plan.phases[3]!.gate!.open).to.equal(false);

    const text = await p.run(['plan']);
    expect(text.stdout).to.match(/step add-column: ACCESS EXCLUSIVE on public\.users \(blocks reads and writes\)/);
    expect(text.stdout).to.include('nothing was changed');
    const verbose = await p.run(['plan', '--verbose']);
    expect(verbose.stdout).to.include('lock: ACCESS EXCLUSIVE on public.users (blocks reads and writes)');
    expect(verbose.stdout.split('\n').length, 'the default view is the short one').to.be.greaterThan(2 * text.stdout.split('\n').length);
    expect(await publicSchema()).to.deep.equal(schemaBefore);
    expect(await exists(`SELECT to_regnamespace('zero_downtime') IS NULL AS ok`), 'plan creates no state schema either').to.equal(true);
  });

  it('up, then status (a table of migrations × phases), verify (mismatches exit non-zero with sample keys), down', async () => {
    // These two in a process of their own: the command must also end its process (no pool, timer or socket left).
    const up = await p.run(['up'], {}, { spawn: true });
    expect(up.code, up.stderr).to.equal(0);
    const status = jsonOut<StatusReport>(await p.run(['status', '--json']));
    expect(status.migrations.map((m) => [m.expand, m.contract])).to.deep.equal([
      ['applied', 'ready'],
      ['applied', 'ready'],
    ]);
    const text = (await p.run(['status'])).stdout;
    expect(text).to.match(/MIGRATION\s+EXPAND\s+BACKFILL\s+VERIFY\s+CONTRACT/);
    expect(text).to.match(/users-surname\.ts\s+applied\s+\[#{20}\] 100\.0% \(200\/200\)\s+consistent \(200 rows\)\s+ready/);

    const ok = await p.run(['verify', '--json']);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(jsonOut<VerifyReport>(ok).changes.map((c) => [c.kind, c.rowsChecked, c.mismatches])).to.deep.equal([['renameColumn', ROWS, 0]]);

    // A writer that bypasses the sync trigger: verify names the row and fails.
    await knex.raw(`ALTER TABLE users DISABLE TRIGGER USER; UPDATE users SET surname = 'drifted' WHERE id = 7; ALTER TABLE users ENABLE TRIGGER USER`);
    const drift = await p.run(['verify', '--json']);
    expect(drift.code).to.equal(1);
    const report = jsonOut<VerifyReport>(drift);
    expect(report.mismatches).to.equal(1);
    expect(report.changes[0]!.sampleKeys).to.deep.equal([['7']]);
    expect(drift.stderr).to.match(/verify found 1 rows where old and new disagree/);
    const waiting = jsonOut<StatusReport>(await p.run(['status', '--json']));
    expect(waiting.migrations[1]!.contract).to.equal('waiting');
    expect(waiting.migrations[1]!.waitingFor.join(' ')).to.match(/verify found 1 mismatching rows/);
    await knex.raw(`UPDATE users SET surname = last_name WHERE id = 7`);
    expect((await p.run(['verify'])).code).to.equal(0);

    const down = await p.run(['down', '--to', '0'], {}, { spawn: true });
    expect(down.code, down.stderr).to.equal(0);
    const cols = await knex.raw(`SELECT string_agg(column_name, ',' ORDER BY column_name) AS c FROM information_schema.columns WHERE table_name = 'users'`);
    expect((cols as { rows: { c: string }[] }).rows[0]!.c).to.equal('first_name,id,last_name');
    const after = jsonOut<StatusReport>(await p.run(['status', '--json']));
    expect(after.migrations.map((m) => m.expand)).to.deep.equal(['pending', 'pending']);
  });

  it('rehearse runs up to the end (contracts too), down, compares, up again; then catches a plain migration whose down forgets its table', async () => {
    const good = await p.run(['rehearse', '--json']);
    expect(good.code, good.stdout + good.stderr).to.equal(0);
    const r = jsonOut<RehearsalReport>(good);
    expect(r.ok).to.equal(true);
    expect(r.applied).to.have.length(4);
    expect(r.applied.filter((n) => n.endsWith(':contract'))).to.have.length(2);
    expect(r.reverted).to.have.length(4);
    expect(r.schemaDiff).to.deep.equal([]);
    expect(r.dataDiff).to.deep.equal([]);
    const executed = jsonOut<{ name: string }[]>(await p.run(['executed', '--json']));
    expect(executed, 'rehearse leaves everything applied').to.have.length(4);

    p.write(
      'migrations/2099.01.01T00.00.00.audit-log.ts',
      `import type { MigrationFn } from 'umzug';
import type { ZeroDowntimeContext } from 'umzug-zero-downtime';
export const up: MigrationFn<ZeroDowntimeContext> = async ({ context }) => {
  await context.knex.raw('CREATE TABLE IF NOT EXISTS audit_log (id bigint PRIMARY KEY, note text)');
  await context.knex.raw("INSERT INTO audit_log VALUES (1, 'created by up') ON CONFLICT DO NOTHING");
};
// Forgets to drop audit_log.
export const down: MigrationFn<ZeroDowntimeContext> = async () => {};
`,
    );
    const broken = await p.run(['rehearse']);
    expect(broken.code).to.equal(1);
    expect(broken.stdout).to.include('✗ down did not restore the schema');
    expect(broken.stdout).to.match(/\+ relation public\.audit_log: r/);
    expect(broken.stdout).to.match(/\+ column public\.audit_log\.id: bigint NOT NULL/);
    expect(broken.stdout).to.match(/✗ down did not restore the data[\s\S]*\+ table public\.audit_log: 1 rows/);
    expect(broken.stderr).to.match(/a down does not undo its up/);
  });
});
