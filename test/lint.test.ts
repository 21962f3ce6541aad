import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { cliProject, jsonOut } from './cli-support.js';
import { useTestDatabase } from './support/pg.js';
import { lintFiles, sharpenWithServer, type LintReport } from '../lib/ops/lint.js';
import { RULES } from '../lib/lint/rules.js';

const KNEX_MIGRATION = `exports.up = async function (knex) {
  await knex.schema.alterTable('posts', (t) => { t.index('title'); });
  await knex.raw('ALTER TABLE posts ALTER COLUMN title TYPE text');
  await knex.transaction(async (trx) => {
    await trx.raw('ALTER TABLE posts ADD COLUMN slug text');
    await trx('posts').update({ slug: 'x' });
  });
};
exports.down = async function () {};
`;

describe('`umzug lint`: unsafe DDL in plain and SQL migrations, read by PostgreSQL\'s parser, no database needed', function () {
  this.timeout(120_000);
  const t = useTestDatabase('lint', async ({ knex }) => {
    await knex.raw(`CREATE TABLE posts (id bigint PRIMARY KEY, title varchar(100))`);
    await knex.raw(`INSERT INTO posts SELECT g, 't' || g FROM generate_series(1, 100) g`);
  });

  it('captures a Knex migration\'s builder calls and raw SQL without a database and names each unsafe statement, its line, why, and the typed change to write', async () => {
    // No config and no DATABASE_URL: lint still works.
    const p = cliProject('lint-offline', { type: 'commonjs' }, '');
    p.write('knexfile.cjs', `module.exports = { client: 'pg' };\n`);
    p.write('migrations/20240101000000_posts.js', KNEX_MIGRATION);
    p.write(
      'migrations/20240102000000_users.sql',
      `SET lock_timeout = '2s';\nSET statement_timeout = '30s';\nALTER TABLE "users; drop table x" ADD COLUMN email text NOT NULL;\n-- umzug-zero-downtime: allow dropping-column because nothing reads legacy since 2.3\nALTER TABLE users DROP COLUMN legacy;\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n`,
    );
    p.write('migrations/20240103000000_typed.js', `const { defineMigration, renameColumn } = require('umzug-zero-downtime');\nmodule.exports = defineMigration({ changes: [renameColumn({ table: 'posts', from: 'title', to: 'name' })] });\n`);
    const r = await p.run(['lint', '--json'], { DATABASE_URL: undefined });
    expect(r.code, r.stderr).to.equal(1);
    const report = jsonOut<LintReport>(r);
    const at = (rule: string) => report.findings.filter((f) => f.rule === rule).map((f) => `${path.basename(f.file)}:${f.line}`);
    expect(at('require-concurrent-index-creation')).to.deep.equal(['20240101000000_posts.js:2']);
    expect(at('changing-column-type')).to.deep.equal(['20240101000000_posts.js:3']);
    expect(at('mixing-ddl-and-dml')).to.deep.equal(['20240101000000_posts.js:6']);
    expect(at('adding-required-field')).to.deep.equal(['20240102000000_users.sql:3']);
    expect(at('dropping-column')).to.deep.equal(['20240102000000_users.sql:5']);
    expect(report.findings.find((f) => f.rule === 'dropping-column')!.allowed).to.equal('nothing reads legacy since 2.3');
    const fixes = Object.fromEntries(report.findings.map((f) => [f.rule, f.fix]));
    expect(fixes['require-concurrent-index-creation']).to.equal(`addIndex({ table: 'posts', columns: ['title'] })`);
    expect(fixes['changing-column-type']).to.equal(`changeColumnType({ table: 'posts', column: 'title', type: 'text' })`);
    expect(fixes['adding-required-field']).to.include(`addColumn({ table: 'users; drop table x', column: { name: 'email'`);
    expect(report.findings.every((f) => f.why.length > 20)).to.equal(true);
    // lock_timeout was set in the SQL file; the Knex file sets none.
    expect(at('require-timeout-settings')).to.deep.equal(['20240101000000_posts.js:3']);
    expect(report.files.map((f) => [path.basename(f.file), f.kind])).to.deep.equal([
      ['20240101000000_posts.js', 'plain'],
      ['20240102000000_users.sql', 'sql'],
      ['20240103000000_typed.js', 'typed'],
    ]);
    expect(report.errors, "mixing-ddl-and-dml is a warning").to.equal(3);

    const gh = await p.run(['lint', '--format', 'github'], { DATABASE_URL: undefined });
    expect(gh.stdout).to.match(/^::error file=migrations\/20240101000000_posts\.js,line=2,title=require-concurrent-index-creation::/m);
    expect(gh.stdout).not.to.match(/dropping-column/);
    const sarif = JSON.parse((await p.run(['lint', '--format', 'sarif'], { DATABASE_URL: undefined })).stdout) as { runs: { results: { ruleId: string; level: string }[] }[] };
    expect(sarif.runs[0]!.results.find((x) => x.ruleId === 'dropping-column')!.level).to.equal('note');
    const one = await p.run(['lint', 'migrations/*.sql'], { DATABASE_URL: undefined });
    expect(one.stdout).to.match(/1 migrations \(1 plain or SQL/);
    const bad = await p.run(['lint', '--format', 'xml'], { DATABASE_URL: undefined });
    expect(bad.code).to.equal(2);
  });

  it('every rule has an id, a level, a reason; a safe migration has no finding', async () => {
    expect(new Set(RULES.map((r) => r.id)).size).to.equal(RULES.length);
    const p = cliProject('lint-safe', { type: 'module' }, '');
    p.write(
      'migrations/2024.01.01T00.00.00.safe.sql',
      `SET lock_timeout = '2s';\nSET statement_timeout = '30s';\nALTER TABLE posts ADD COLUMN note text;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS posts_note ON posts (note);\nALTER TABLE posts ADD CONSTRAINT posts_note_len CHECK (length(note) < 100) NOT VALID;\nALTER TABLE posts VALIDATE CONSTRAINT posts_note_len;\nUPDATE posts SET note = 'x' WHERE id BETWEEN 1 AND 1000;\n` +
        // A table created in the same migration has no rows and no readers yet: indexing it plainly is fine.
        `CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text);\nCREATE INDEX notes_body ON notes (body);\nALTER TABLE notes ALTER COLUMN body SET NOT NULL;\n`,
    );
    const r = await p.run(['lint', '--json'], { DATABASE_URL: undefined });
    expect(r.code, r.stdout).to.equal(0);
    expect(jsonOut<LintReport>(r).findings).to.deep.equal([]);
  });

  it('before `up`: lint \'error\' stops it with nothing run; an allow comment with a reason lets it run', async () => {
    const p = cliProject('lint-up', { type: 'commonjs' }, t.url);
    p.write('umzug.config.cjs', `module.exports = { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 4 } }, plainMigrations: 'knex', lint: 'error', logger: null };\n`);
    p.write('migrations/20240101000000_posts.js', KNEX_MIGRATION);
    const refused = await p.run(['up']);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(/lint: 2 unsafe statements in pending plain migrations\. Nothing was run/);
    const idx = await t.knex.raw(`SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'posts' AND indexname <> 'posts_pkey'`);
    expect(idx.rows[0].n, 'nothing ran').to.equal(0);
    p.write(
      'migrations/20240101000000_posts.js',
      `// umzug-zero-downtime: allow require-concurrent-index-creation because posts has 100 rows\n// umzug-zero-downtime: allow changing-column-type because widening varchar to text rewrites nothing\n// umzug-zero-downtime: allow mixing-ddl-and-dml because the table is tiny\n` +
        KNEX_MIGRATION,
    );
    const ran = await p.run(['up']);
    expect(ran.code, ran.stderr).to.equal(0);
    const text = readFileSync(path.join(p.dir, 'migrations/20240101000000_posts.js'), 'utf8');
    expect(text).to.include('allow');
    expect((await t.knex.raw(`SELECT count(*)::int AS n FROM posts WHERE slug = 'x'`)).rows[0].n).to.equal(100);
  });

  it('the server sharpens findings: table sizes, a SET NOT NULL a validated CHECK proves, an empty table\'s index', async () => {
    await t.knex.raw(`CREATE TABLE proven (id bigint PRIMARY KEY, email text, CONSTRAINT email_nn CHECK (email IS NOT NULL))`);
    await t.knex.raw(`INSERT INTO proven SELECT g, 'e' || g FROM generate_series(1, 50) g`);
    await t.knex.raw(`CREATE TABLE empty_one (id bigint PRIMARY KEY, note text)`);
    await t.knex.raw(`ANALYZE proven, empty_one, posts`);
    const p = cliProject('lint-server', { type: 'module' }, t.url);
    const file = p.write(
      'migrations/001.sql',
      `SET lock_timeout = '2s';\nSET statement_timeout = '30s';\nALTER TABLE proven ALTER COLUMN email SET NOT NULL;\nCREATE INDEX empty_note ON empty_one (note);\nCREATE INDEX posts_title ON posts (title);\nCREATE INDEX ghost_x ON ghost (x);\n`,
    );
    const offline = await lintFiles([file], { cwd: p.dir });
    expect(offline.findings.map((f) => f.rule)).to.deep.equal(['setting-not-null', 'require-concurrent-index-creation', 'require-concurrent-index-creation', 'require-concurrent-index-creation']);
    const sharp = await sharpenWithServer(t.db, offline);
    expect(sharp.findings.map((f) => [f.rule, f.table, f.level, f.server])).to.deep.equal([
      ['require-concurrent-index-creation', 'empty_one', 'warn', 'empty_one: ~0 rows, 0.0 MB (empty: the lock is brief today)'],
      ['require-concurrent-index-creation', 'posts', 'error', sharp.findings[1]!.server],
      ['require-concurrent-index-creation', 'ghost', 'error', 'ghost is not in the database yet'],
    ]);
    expect(sharp.findings[1]!.server).to.match(/^posts: ~100 rows, \d+\.\d MB$/);
    expect(sharp.errors).to.equal(2);
  });
});
