// `umzug refs` and contract.requireNoRefs: the places in the application's source that mention what a pending contract
// removes. The plan tier (no database) checks what each change's contract removes and the scanner on the fixtures in
// test/fixtures/refs/src (a TS file, a CommonJS file, a .sql file, an ORM model, and a migrations folder never read);
// the integration test runs the bin on a project with a renameColumn migration.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Knex } from 'knex';
import { changeColumnType, dropColumn, dropTable, mergeTables, renameColumn, renameTable, splitTable, addIndex, type Change } from '../lib/index.js';
import { removedByChange, type RemovedStructure } from '../lib/changes/removed.js';
import { resolveConfig } from '../lib/config.js';
import type { CatalogSnapshot } from '../lib/postgres/catalog.js';
import { loadSqlParser } from '../lib/postgres/sql-ast.js';
import { listSourceFiles, scanFiles, scanSource, type RefFinding } from '../lib/refs/scan.js';
import type { RefsReport } from '../lib/ops/refs.js';
import type { StatusReport } from '../lib/ops/status.js';
import { cliProject, jsonOut, type CliProject } from './cli-support.js';
import { freshDatabase, knexFor } from './support/pg.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(here, 'fixtures/refs');
const USERS_NAME: RemovedStructure = { schema: 'public', table: 'users', column: 'name' };
const at = (fs: readonly RefFinding[]) => fs.map((f) => `${f.file}:${f.line} ${f.kind}`);

describe('refs, plan tier: what a contract removes', () => {
  const catalog = JSON.parse(readFileSync(path.join(here, 'fixtures/plan-catalog.json'), 'utf8')) as CatalogSnapshot;
  const ctx = { defaultSchema: 'public', stateSchema: 'zero_downtime' };
  before(() => loadSqlParser());

  it('is read from each change’s own contract statements', () => {
    const cases: [Change, string[]][] = [
      [renameColumn({ table: 'users', from: 'email', to: 'login' }), ['users.email']],
      [dropColumn({ table: 'users', column: 'legacy' }), ['users.legacy']],
      // The column keeps its name (the new one is renamed to it): nothing the source names goes away.
      [changeColumnType({ table: 'orders', column: 'total_cents', type: 'bigint' }), []],
      [renameTable({ from: 'audit_log', to: 'audit_events' }), ['audit_log']],
      [dropTable({ table: 'audit_log' }), ['audit_log']],
      [splitTable({ from: 'users', to: 'user_bios', columns: ['first_name', 'last_name'], key: ['id'] }), ['users.first_name', 'users.last_name']],
      [mergeTables({ from: ['users', 'profiles'], into: 'accounts', key: ['id'] }), ['profiles', 'users']],
      [addIndex({ table: 'orders', columns: ['user_id'] }), []],
    ];
    for (const [change, expected] of cases) {
      const got = removedByChange(change, catalog, ctx).map((r) => (r.column ? `${r.table}.${r.column}` : r.table));
      expect(got, change.kind).to.deep.equal(expected);
    }
  });
});

describe('refs, plan tier: the config', () => {
  const knex = { client: 'pg', connection: 'postgres://postgres@127.0.0.1:5432/none' };
  it('takes contract.requireNoRefs and refs { src, ignore, fields }, default off', () => {
    const on = resolveConfig({ knex, contract: { requireNoRefs: true }, refs: { src: 'app', ignore: ['**/*.test.ts'], fields: { 'users.name': ['userName'], 'billing.invoices.total': ['total'] } } });
    expect(on.requireNoRefs).to.equal(true);
    expect(on.refs).to.deep.equal({ src: ['app'], ignore: ['**/*.test.ts'], fields: { 'users.name': ['userName'], 'billing.invoices.total': ['total'] } });
    const off = resolveConfig({ knex });
    expect(off.requireNoRefs).to.equal(false);
    expect(off.refs).to.deep.equal({ src: [], ignore: [], fields: {} });
  });
  it('refuses a field mapping that names no table, and an unknown key, by path', () => {
    expect(() => resolveConfig({ knex, refs: { fields: { name: ['userName'] } } })).to.throw(/refs\/fields|refs\.fields/);
    expect(() => resolveConfig({ knex, refs: { source: ['src'] } } as never)).to.throw(/refs/);
    expect(() => resolveConfig({ knex, contract: { requireNoRefs: 'yes' } } as never)).to.throw(/requireNoRefs/);
  });
});

describe('refs, plan tier: the source scanner', () => {
  let findings: readonly RefFinding[];
  before(async () => {
    const files = await listSourceFiles(FIXTURES, ['src'], ['src/migrations/**']);
    expect(files.map((f) => path.relative(FIXTURES, f))).to.deep.equal(['src/jobs.cjs', 'src/orm.ts', 'src/report.sql', 'src/users.ts']);
    findings = (await scanFiles(files, { removed: [USERS_NAME], fields: { 'users.name': ['userName'] } }, FIXTURES)).findings;
  });

  it('a TS file: a raw SQL string and a Knex builder chain; not a comment, another table’s `name` or a log message', () => {
    const ts = findings.filter((f) => f.file === 'src/users.ts');
    expect(at(ts)).to.deep.equal(['src/users.ts:6 sql-string', 'src/users.ts:11 knex-builder']);
    expect(ts[0]).to.include({ line: 6, column: 42, text: "const row = await knex.raw('SELECT id, name FROM users WHERE id = ?', [id]);" });
    expect(ts[0]!.removed).to.deep.equal(USERS_NAME);
  });

  it('a CommonJS file: a template literal (with a substitution) and `.update({ name })`', () => {
    expect(at(findings.filter((f) => f.file === 'src/jobs.cjs'))).to.deep.equal(['src/jobs.cjs:6 sql-string', 'src/jobs.cjs:11 knex-builder']);
  });

  it('a .sql file: the statement’s column reference, with its own line; not the comment nor the other statement', () => {
    expect(at(findings.filter((f) => f.file === 'src/report.sql'))).to.deep.equal(['src/report.sql:6 sql-file']);
  });

  it('ORM field names from config: the class property and its use; none without the mapping', async () => {
    expect(at(findings.filter((f) => f.file === 'src/orm.ts'))).to.deep.equal(['src/orm.ts:4 orm-field', 'src/orm.ts:8 orm-field']);
    const orm = path.join(FIXTURES, 'src/orm.ts');
    expect(await scanSource(orm, readFileSync(orm, 'utf8'), { removed: [USERS_NAME] }, FIXTURES)).to.deep.equal([]);
  });

  const scan = (text: string, removed: RemovedStructure[] = [USERS_NAME], file = 'app.ts') => scanSource(path.join(FIXTURES, file), text, { removed }, FIXTURES);

  it('SQL strings: SELECT * from the table, INSERT without columns and qualified columns count; other tables, aliases and text do not', async () => {
    const yes = [
      `q('SELECT * FROM users WHERE id = 1')`,
      `q("INSERT INTO users VALUES (1, 'x')")`,
      'q(`SELECT u.name FROM users AS u JOIN orders o ON o.user_id = u.id`)',
      'q(`SELECT name FROM ${table} WHERE id = $1`)', // a table we cannot know
      `q('UPDATE users SET name = ? WHERE id = ?')`,
      `q("INSERT INTO users (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = excluded.name")`,
      `const col = 'users.name'`,
    ];
    for (const text of yes) expect(await scan(text), text).to.have.length.greaterThan(0);
    const no = [
      `q('SELECT id, name FROM products')`,
      `q('SELECT o.name FROM users u JOIN orgs o ON o.id = u.org_id')`,
      `q('SELECT full_name AS name FROM users')`,
      `log('Update the name of the user')`,
      `log('select a name')`,
      `// SELECT name FROM users`,
      `/* knex('users').select('name') */`,
      `crypto.createHash('sha256').update('name')`,
      `q('SELECT * FROM users') // umzug-zero-downtime: allow ref because the old version's report`,
    ];
    for (const text of no) expect(await scan(text), text).to.deep.equal([]);
  });

  it('Knex chains: a table set later (.from), aliases, joins and a table the chain cannot know', async () => {
    const yes = [
      `knex.select('name').from('users')`,
      `knex('users as u').where('u.name', 'x')`,
      `knex('orders').join('users', 'users.id', 'orders.user_id').select('users.name')`,
      `User.query().where('name', 'x').first()`,
      `knex('users').insert([{ id: 1, name: 'x' }])`,
      `knex('users').pluck('name')`,
      `knex('users').orderBy('name', 'desc')`,
    ];
    for (const text of yes) expect(at(await scan(text)), text).to.deep.equal(['app.ts:1 knex-builder']);
    const no = [`knex('products').select('name')`, `knex('products').where({ name: 'x' })`, `knex('users').select('full_name')`];
    for (const text of no) expect(await scan(text), text).to.deep.equal([]);
  });

  it('a removed table: in SQL, in a builder chain and as a table-name string', async () => {
    const removed = [{ schema: 'public', table: 'audit_log' }];
    const found = await scan(`const a = knex('audit_log').select('*');\nconst b = 'SELECT count(*) FROM audit_log';\nclass Audit { static tableName = 'audit_log'; }\nconst c = 'SELECT * FROM audit_events';`, removed);
    expect(at(found)).to.deep.equal(['app.ts:1 knex-builder', 'app.ts:2 sql-string', 'app.ts:3 identifier']);
  });
});

describe('refs, integration: `umzug refs` and contract.requireNoRefs on a project renaming users.name', function () {
  this.timeout(180_000);
  let url: string;
  let knex: Knex;
  let p: CliProject;
  const MIGRATION = '2099.01.01T00.00.01.users-full-name';

  before(async () => {
    url = await freshDatabase('refs');
    knex = knexFor(url, 2);
    await knex.raw(`CREATE TABLE users (id int PRIMARY KEY, name text)`);
    await knex.raw(`INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20) g`);
    p = cliProject('refs', { type: 'module' }, url);
    p.write(
      'umzug.config.js',
      `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 } }, logger: null,
  contract: { after: 0, requireNoRefs: true }, refs: { src: ['src'], fields: { 'users.name': ['userName'] } },
  monitor: { canary: false }, backfill: { canary: false } };
`,
    );
    p.write(
      `migrations/${MIGRATION}.js`,
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name' })] });
`,
    );
    for (const f of ['users.ts', 'jobs.cjs', 'report.sql', 'orm.ts']) p.write(`src/${f}`, readFileSync(path.join(FIXTURES, 'src', f), 'utf8'));
    // A migration under src/ too would be read; the migrations folder never is.
  });
  after(() => knex?.destroy());

  it('finds the references in a TS, a JS and a SQL file; the gate names them until the source is fixed', async () => {
    const up = await p.run(['up', '--json']);
    expect(up.code, up.stderr).to.equal(0);
    expect(jsonOut<{ applied: string[] }>(up).applied).to.deep.equal([`${MIGRATION}.js:expand`]);

    const refs = await p.run(['refs', '--json']);
    expect(refs.code, refs.stderr).to.equal(0);
    const report = jsonOut<RefsReport>(refs);
    expect(report.removed.map((r) => r.label)).to.deep.equal(['users.name']);
    expect(report.removed[0]!.contracts).to.deep.equal([`${MIGRATION}.js:contract`]);
    expect(report.findings.map((f) => `${f.file}:${f.line} ${f.kind}`)).to.deep.equal([
      'src/jobs.cjs:6 sql-string',
      'src/jobs.cjs:11 knex-builder',
      'src/orm.ts:4 orm-field',
      'src/orm.ts:8 orm-field',
      'src/report.sql:6 sql-file',
      'src/users.ts:6 sql-string',
      'src/users.ts:11 knex-builder',
    ]);

    const text = await p.run(['refs']);
    expect(text.code, text.stderr).to.equal(0);
    expect(text.stdout).to.match(/^src\/users\.ts:6:42\s+users\.name\s+sql-string\s+const row = await knex\.raw/m);
    expect(text.stdout).to.match(/7 references in 4 of 4 files of src to what pending contracts remove \(users\.name\)/);
    const failing = await p.run(['refs', '--fail-on-refs']);
    expect(failing.code).to.equal(1);
    // --src narrows the search.
    const onlySql = jsonOut<RefsReport>(await p.run(['refs', '--src', 'src/report.sql', '--json']));
    expect(onlySql.findings.map((f) => f.file)).to.deep.equal(['src/report.sql']);

    const waiting = jsonOut<StatusReport>(await p.run(['status', '--json'])).migrations[0]!;
    expect(waiting.contract).to.equal('waiting');
    expect(waiting.waitingFor).to.deep.equal([
      'change #1 (renameColumn): 7 references to users.name in the source (first: src/jobs.cjs:6); see `umzug refs`',
    ]);
    const again = await p.run(['up', '--json']);
    expect(again.code, again.stderr).to.equal(0);
    const result = jsonOut<{ applied: string[]; waiting: { name: string; reasons: string[] }[] }>(again);
    expect(result.applied).to.deep.equal([]);
    expect(result.waiting[0]!.reasons.join('\n')).to.match(/references to users\.name in the source \(first: src\/jobs\.cjs:6\)/);

    // The application moves to full_name.
    for (const f of ['users.ts', 'jobs.cjs', 'report.sql']) {
      const body = readFileSync(path.join(FIXTURES, 'src', f), 'utf8');
      const fixed = body
        .replace('SELECT id, name FROM users', 'SELECT id, full_name FROM users')
        .replace("select('id', 'name')", "select('id', 'full_name')")
        .replace('SET name = $1', 'SET full_name = $1')
        .replace('update({ name })', 'update({ full_name: name })')
        .replace('u.name AS customer', 'u.full_name AS customer');
      expect(fixed, f).to.not.equal(body);
      p.write(`src/${f}`, fixed);
    }
    p.write('src/orm.ts', readFileSync(path.join(FIXTURES, 'src/orm.ts'), 'utf8').replaceAll('userName', 'fullName'));
    const clean = await p.run(['refs', '--json', '--fail-on-refs']);
    expect(clean.code, clean.stderr).to.equal(0);
    expect(jsonOut<RefsReport>(clean).findings).to.deep.equal([]);
    const ready = jsonOut<StatusReport>(await p.run(['status', '--json'])).migrations[0]!;
    expect(ready.contract, ready.waitingFor.join('; ')).to.equal('ready');
    const contract = await p.run(['up', '--json']);
    expect(jsonOut<{ applied: string[] }>(contract).applied).to.deep.equal([`${MIGRATION}.js:contract`]);
    // No pending contract: nothing to look for.
    const none = await p.run(['refs']);
    expect(none.stdout).to.match(/No pending contract removes a column or table/);
  });
});
