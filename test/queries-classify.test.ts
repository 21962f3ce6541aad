// One classifier for "is this the application's data statement", used by the contract's query gate (ops/queries.ts)
// and the monitor's relative triggers (monitor/relative.ts): PostgreSQL's parser, not a regex.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { statementUses } from '../lib/ops/queries.js';
import { keysetNthKeySql, keyProbeSql, sampleKeysSql, verifyChunkSql, type KeyColumn } from '../lib/postgres/batch-sql.js';
import { loadSqlParser, parseSqlSync } from '../lib/postgres/sql-ast.js';
import { classifyStatement, isApplicationDataStatement, ownEntrySql } from '../lib/postgres/statement-kind.js';
import { applyConversion } from '../lib/postgres/triggers.js';

describe('queries: the statement classifier shared by the query gate and the relative triggers', () => {
  before(() => loadSqlParser());
  const users = { schema: 'public', name: 'users' };
  const id: KeyColumn[] = [{ name: 'id', type: 'integer' }];

  it("the application's reads and writes are data: SELECT, WITH … SELECT, INSERT, UPDATE, DELETE, VALUES, COPY, EXPLAIN", () => {
    for (const q of [
      'SELECT id, name FROM users WHERE id = $1',
      'WITH recent AS (SELECT id FROM orders WHERE at > $1) SELECT u.name FROM users u JOIN recent r ON r.id = u.id',
      'INSERT INTO users (id, name) VALUES ($1, $2)',
      'UPDATE accounts SET balance = balance + $1 WHERE id = $2',
      'DELETE FROM sessions WHERE expires < $1',
      'WITH moved AS (DELETE FROM inbox WHERE id = $1 RETURNING *) INSERT INTO archive SELECT * FROM moved',
      '/* app:checkout */ (SELECT balance FROM accounts WHERE id = $1)',
      'VALUES ($1, $2)',
      'TABLE users',
      'COPY users (id, name) FROM STDIN',
      'EXPLAIN SELECT name FROM users',
      'SELECT $1', // a pool's health check runs on no table and is still the application's
    ]) {
      expect(classifyStatement(q), q).to.equal('data');
      expect(isApplicationDataStatement(q), q).to.equal(true);
    }
  });

  it('transaction control, settings and DDL are utility statements', () => {
    for (const q of ['BEGIN', 'COMMIT', 'ROLLBACK', 'START TRANSACTION ISOLATION LEVEL REPEATABLE READ', 'SET statement_timeout = $1', "SET application_name = 'x'", 'SHOW search_path', 'ALTER TABLE users DROP COLUMN name', 'CREATE INDEX CONCURRENTLY i ON users (name)', 'VACUUM users', 'CALL refresh_totals($1)', 'DEALLOCATE ALL', 'DISCARD ALL']) {
      expect(classifyStatement(q), q).to.equal('utility');
    }
  });

  it('lookups of the system catalogs only (an ORM, a driver, our snapshot) are catalog, not data', () => {
    for (const q of [
      'SELECT oid, typname FROM pg_type WHERE typname = ANY($1)',
      'SELECT c.relname, a.attname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid WHERE c.oid = $1::regclass',
      'SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2',
      'SELECT pid, state FROM pg_stat_activity WHERE datname = current_database()',
      'SELECT queryid, calls FROM "public".pg_stat_statements', // a monitoring agent, wherever the extension lives
      'WITH t AS (SELECT oid FROM pg_class WHERE relkind = $1) SELECT count(*) FROM t',
    ]) {
      expect(classifyStatement(q), q).to.equal('catalog');
    }
    // A catalog joined to the application's own table is the application's.
    expect(classifyStatement('SELECT u.id FROM users u JOIN pg_class c ON c.relname = u.name')).to.equal('data');
    // A removed table that shares its name with a catalog view is not "used" by a lookup of information_schema.
    expect(statementUses('SELECT column_name FROM information_schema.columns WHERE table_name = $1', [{ schema: 'public', table: 'columns' }])).to.equal(null);
    expect(statementUses('SELECT id FROM columns WHERE id = $1', [{ schema: 'public', table: 'columns' }])).to.have.length(1);
  });

  it("our own statements: the backfill's and verify's `_zd_` names, the sync triggers' bodies, the marker, the state schema, the canary", () => {
    const ours = [
      keysetNthKeySql(users, id, true, true),
      verifyChunkSql(users, id, [{ column: 'full_name', expression: '"name"' }], true),
      sampleKeysSql(users, id),
      // A converting trigger's conversion as pg_stat_statements.track = all shows it (NEW."name" became $1).
      `SELECT ${applyConversion({ sql: 'lower(name)', param: 'name' }, '$1')}`,
      'INSERT INTO "public"."b" AS _zd_t ("id", "x") VALUES ($1, $2) ON CONFLICT ("id") DO UPDATE SET "x" = EXCLUDED."x" WHERE ROW(_zd_t."x") IS DISTINCT FROM ROW(EXCLUDED."x")',
      '/* umzug-zero-downtime monitor */ SELECT xact_commit::text AS commits FROM pg_stat_database WHERE datname = current_database()',
      keyProbeSql(users, id),
      keyProbeSql(users, id, true),
      ownEntrySql('SELECT * FROM "public"."users" WHERE "id" = $1', '_zd_canary'),
    ];
    for (const q of ours) expect(classifyStatement(q), q).to.equal('ours');
    // The state schema's tables are ours when the caller says which schema that is.
    const flagRead = 'SELECT percent FROM "zero_downtime"."flags" WHERE name = $1';
    expect(classifyStatement(flagRead, { stateSchema: 'zero_downtime' })).to.equal('ours');
    expect(classifyStatement(flagRead)).to.equal('data');
    expect(classifyStatement('SELECT x_zd_y FROM t')).to.equal('data');
  });

  it('another role’s hidden text and text the parser refuses are neither', () => {
    expect(classifyStatement('<insufficient privilege>')).to.equal('hidden');
    expect(classifyStatement('SELEC name FROM users')).to.equal('unparsed');
    expect(classifyStatement('')).to.equal('unparsed');
  });

  it('the canary gets an entry of its own: a plain SELECT is wrapped in a `_zd_` CTE; locking reads, writes, broken text and our own probes are left as they are', () => {
    const read = 'SELECT * FROM "public"."users" WHERE "id" = $1';
    const wrapped = ownEntrySql(read, '_zd_canary');
    expect(wrapped).to.equal(`WITH _zd_canary AS (\n${read}\n) SELECT * FROM _zd_canary`);
    expect(parseSqlSync(wrapped)).to.have.length(1);
    // A trailing line comment, or a semicolon, does not break the wrapper.
    expect(parseSqlSync(ownEntrySql('SELECT 1 -- the app’s ping', '_zd_canary'))).to.have.length(1);
    expect(ownEntrySql('SELECT 1;', '_zd_canary')).to.equal('WITH _zd_canary AS (\nSELECT 1\n) SELECT * FROM _zd_canary');
    for (const keep of [`${read} FOR NO KEY UPDATE`, 'UPDATE users SET name = name WHERE id = $1', 'SELECT 1; SELECT 2', 'SELEC 1', 'SELECT * INTO copy FROM users', keyProbeSql(users, id)]) {
      expect(ownEntrySql(keep, '_zd_canary'), keep).to.equal(keep);
    }
    // The backfill's probes, read and locking, come in their own CTE and still parse as one statement.
    for (const probe of [keyProbeSql(users, id), keyProbeSql(users, id, true)]) {
      expect(probe).to.match(/^WITH _zd_canary AS \(SELECT \* FROM "public"\."users" WHERE/);
      expect(parseSqlSync(probe)).to.have.length(1);
    }
    expect(() => ownEntrySql(read, 'canary')).to.throw(/not a _zd_ name/);
  });

  it('the relative triggers have no classifier of their own', () => {
    const src = readFileSync(new URL('../lib/monitor/relative.ts', import.meta.url), 'utf8');
    expect(src).to.include("from '../postgres/statement-kind.js'");
    expect(src).to.not.match(/\/\^\\s\*.*select\|/i);
  });
});
