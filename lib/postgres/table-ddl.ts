import type { Statement } from '../db/db.js';
import { registerTableArchiveSql } from './archive.js';
import { ident, literal, qualified, type TableName, dollarQuote } from './identifiers.js';

/** Table-level DDL: renames, views standing in for an old name, archiving into the state schema. */
const st = (text: string): Statement => ({ text });

export function renameTable(t: TableName, to: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} RENAME TO ${ident(to)}`);
}

export function setSchema(t: TableName, schema: string): Statement {
  return st(`ALTER TABLE ${qualified(t)} SET SCHEMA ${ident(schema)}`);
}

/**
 * A view of a single table with every column is automatically updatable: INSERT, UPDATE, DELETE and RETURNING through
 * it reach the table, and columns left out of an INSERT get the table's defaults. security_invoker (PostgreSQL 15+,
 * left out here for older servers) is not needed for the owner's own application role.
 */
export function createPassThroughView(view: TableName, table: TableName): Statement {
  return st(`CREATE VIEW ${qualified(view)} AS SELECT * FROM ${qualified(table)}`);
}

export function dropViewIfExists(view: TableName): Statement {
  return st(`DROP VIEW IF EXISTS ${qualified(view)}`);
}

export interface ColumnDef {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
  /** SQL of the default (a literal built with constantLiteral, or the author's expression), or null. */
  readonly defaultSql: string | null;
}

export function createTable(t: TableName, columns: readonly ColumnDef[], primaryKey: readonly string[]): Statement {
  const cols = columns.map((c) => `${ident(c.name)} ${c.type}${c.notNull ? ' NOT NULL' : ''}${c.defaultSql != null ? ` DEFAULT ${c.defaultSql}` : ''}`);
  return st(`CREATE TABLE ${qualified(t)} (${[...cols, `PRIMARY KEY (${primaryKey.map(ident).join(', ')})`].join(', ')})`);
}

/**
 * Undo of a table creation: an empty table is dropped; one holding rows (written by the new version) is moved into the
 * state schema as `<archivePrefix>_<time in hex ms>` and registered, so nothing is lost until `umzug purge`.
 */
export function dropOrArchiveTable(t: TableName, stateSchema: string, archivePrefix: string): Statement {
  // The archive's name gets the time of the undo, chosen here at run time, so the plan stays a pure function of its
  // inputs and a table created and undone twice leaves two archives.
  const body = `
DECLARE _zd_name text := ${literal(archivePrefix)} || '_' || to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint);
BEGIN
  IF EXISTS (SELECT 1 FROM ${qualified(t)}) THEN
    EXECUTE format('ALTER TABLE %s RENAME TO %I', ${literal(qualified(t))}, _zd_name);
    EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', ${literal(t.schema)}, _zd_name, ${literal(stateSchema)});
    ${registerTableArchiveSql(stateSchema, { sql: '_zd_name' }, t, 'create-table-undone')};
  ELSE
    DROP TABLE ${qualified(t)};
  END IF;
END`;
  return st(`DO ${dollarQuote(body)}`);
}

/**
 * Grants on `view` (or a new table) every privilege the application roles hold on `table`, so a role that could read
 * and write the table under its old name still can through the view, or the table split off it (a new relation has no
 * grants; a view's owner is checked against the table). Read from aclexplode() at run time, in the same transaction.
 */
export function copyTablePrivileges(table: TableName, view: TableName): Statement {
  const body = `
DECLARE _zd_g record;
BEGIN
  FOR _zd_g IN
    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
      FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
     WHERE c.oid = ${literal(qualified(table))}::regclass AND a.grantee <> c.relowner
       AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
  LOOP
    EXECUTE format('GRANT %s ON %s TO %s', _zd_g.privilege_type, ${literal(qualified(view))}, _zd_g.grantee);
  END LOOP;
END`;
  return st(`DO ${dollarQuote(body)}`);
}
