import { expect } from 'chai';
import { loadSqlParser, requestedLocksSync, strongestLock } from '../lib/postgres/statement-locks.js';

// The locks plan reports for a statement whose lock its transaction already held, and for statements it cannot run:
// PostgreSQL's grammar (libpg-query) and the lock levels its documentation gives.
describe('plan tier: the table locks a statement requests, read from the real PostgreSQL parser', () => {
  before(() => loadSqlParser());
  const locks = (sql: string) => requestedLocksSync(sql).map((l) => `${l.mode} ${l.relation}`);

  it('ALTER TABLE: the strongest of its subcommands; NOT VALID foreign keys lock both tables in SHARE ROW EXCLUSIVE', () => {
    expect(locks('ALTER TABLE "users; drop table x" ALTER COLUMN a SET NOT NULL')).to.deep.equal(['AccessExclusiveLock users; drop table x']);
    expect(locks('ALTER TABLE s.t VALIDATE CONSTRAINT c')).to.deep.equal(['ShareUpdateExclusiveLock s.t']);
    expect(locks('ALTER TABLE t VALIDATE CONSTRAINT c, ALTER COLUMN a SET STATISTICS 100')).to.deep.equal(['ShareUpdateExclusiveLock t']);
    expect(locks('ALTER TABLE t VALIDATE CONSTRAINT c, DROP COLUMN b')).to.deep.equal(['AccessExclusiveLock t']);
    expect(locks('ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES s.u (id) NOT VALID')).to.deep.equal(['ShareRowExclusiveLock t', 'ShareRowExclusiveLock s.u']);
    expect(locks('ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID')).to.deep.equal(['AccessExclusiveLock t']);
    expect(locks('ALTER TABLE t DISABLE TRIGGER x')).to.deep.equal(['ShareRowExclusiveLock t']);
    expect(locks('ALTER TABLE t DETACH PARTITION p CONCURRENTLY')).to.deep.equal(['ShareUpdateExclusiveLock t']);
    expect(strongestLock(requestedLocksSync('ALTER TABLE t ALTER COLUMN a SET NOT NULL'))!.form).to.equal('ALTER TABLE … SET NOT NULL');
  });

  it('indexes, renames, triggers, drops, LOCK, TRUNCATE, VACUUM FULL, CLUSTER; DML and SELECT request nothing listed', () => {
    expect(locks('CREATE UNIQUE INDEX CONCURRENTLY i ON s.t (a)')).to.deep.equal(['ShareUpdateExclusiveLock s.t']);
    expect(locks('CREATE INDEX i ON t (a)')).to.deep.equal(['ShareLock t']);
    expect(locks('DROP INDEX CONCURRENTLY s.i')).to.deep.equal(['ShareUpdateExclusiveLock s.i']);
    expect(locks('ALTER INDEX i RENAME TO j')).to.deep.equal(['ShareUpdateExclusiveLock i']);
    expect(locks('ALTER TABLE t RENAME COLUMN a TO b')).to.deep.equal(['AccessExclusiveLock t']);
    expect(locks('CREATE TRIGGER x AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()')).to.deep.equal(['ShareRowExclusiveLock t']);
    expect(locks('DROP TRIGGER IF EXISTS x ON s.t')).to.deep.equal(['AccessExclusiveLock s.t']);
    expect(locks('DROP TABLE IF EXISTS a, s.b')).to.deep.equal(['AccessExclusiveLock a', 'AccessExclusiveLock s.b']);
    expect(locks('LOCK TABLE a, b IN SHARE ROW EXCLUSIVE MODE NOWAIT')).to.deep.equal(['ShareRowExclusiveLock a', 'ShareRowExclusiveLock b']);
    expect(locks('TRUNCATE t')).to.deep.equal(['AccessExclusiveLock t']);
    expect(locks('VACUUM FULL t')).to.deep.equal(['AccessExclusiveLock t']);
    expect(locks('VACUUM t')).to.deep.equal([]);
    expect(locks('CLUSTER t USING i')).to.deep.equal(['AccessExclusiveLock t']);
    expect(locks(`UPDATE t SET a = 1 WHERE id = $1; SELECT * FROM t; INSERT INTO t VALUES (1)`)).to.deep.equal([]);
  });

  it('refuses what is not SQL, with the parser\'s own message', () => {
    expect(() => requestedLocksSync('ALTER TABLE t SET NOT NUL')).to.throw(/syntax error/);
  });
});
