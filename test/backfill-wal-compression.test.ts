import { expect } from 'chai';
import pg from 'pg';
import { zeroDowntime } from '../lib/index.js';
import { Db } from '../lib/db/db.js';
import { batchWalCompression } from '../lib/postgres/wal-compression.js';
import { knexFor, pgClient, silentLogger, testDatabaseName, useTestDatabase, urlFor } from './support/pg.js';
import { tempProject } from './support/project.js';

/**
 * A backfill's batches compress the page images they log (wal_compression, set for their own transactions) where
 * the server has it off and the session may set it, and leave the server's setting alone otherwise.
 */
describe('backfill batches and wal_compression', function () {
  this.timeout(60_000);
  const t = useTestDatabase('backfill_walc');
  const role = testDatabaseName('walc_role');

  // Roles are the server's, not the database's: dropped here, not with the run's databases.
  after(async () => {
    const admin = await pgClient(urlFor('postgres'));
    await admin
      .query(`REVOKE SET ON PARAMETER wal_compression FROM ${pg.escapeIdentifier(role)}`)
      .catch(() => undefined)
      .then(() => admin.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(role)}`))
      .finally(() => admin.end());
  });

  it("a batch's UPDATE runs with compression on: it writes what its own transaction sees", async () => {
    const methods = (await t.knex.raw(`SELECT enumvals FROM pg_settings WHERE name = 'wal_compression'`)) as { rows: { enumvals: string[] }[] };
    const standbys = (await t.knex.raw(`SELECT count(*)::int AS n FROM pg_stat_replication`)) as { rows: { n: number }[] };
    const expected = methods.rows[0]!.enumvals.includes('lz4') && standbys.rows[0]!.n === 0 ? 'lz4' : 'pglz';
    await t.knex.raw(`CREATE TABLE items (id int PRIMARY KEY, title text)`);
    await t.knex.raw(`INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 3000) g`);
    const project = tempProject('walc');
    project.write(
      '001.walc.ts',
      `import { defineMigration, addColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [addColumn({ table: 'items', column: { name: 'seen', type: 'text' }, backfill: "current_setting('wal_compression')" })] });
`,
    );
    const umzug = zeroDowntime({ knex: t.knex, cwd: project.dir, contract: { after: '1d' }, backfill: { batchSize: 500, canary: false }, logger: silentLogger });
    await umzug.up();
    const seen = (await t.knex.raw(`SELECT seen, count(*)::int AS n FROM items GROUP BY seen`)) as { rows: { seen: string; n: number }[] };
    expect(seen.rows).to.deep.equal([{ seen: expected, n: 3000 }]);
    const server = (await t.knex.raw(`SHOW wal_compression`)) as { rows: { wal_compression: string }[] };
    expect(server.rows[0]!.wal_compression, 'the session keeps the server setting').to.equal('off');
  });

  it('leaves it alone where the session may not set it (until granted SET on it), and where the database has a setting of its own', async () => {
    expect(await batchWalCompression(t.db)).to.be.oneOf(['lz4', 'pglz']);
    await t.knex.raw(`CREATE ROLE ${pg.escapeIdentifier(role)} LOGIN`);
    const plain = knexFor(t.url.replace('postgres@', `${role}@`), 1);
    try {
      expect(await batchWalCompression(new Db(plain)), 'not a superuser').to.equal(null);
      // PostgreSQL 15+: a role granted SET on the parameter may set it.
      await t.knex.raw(`GRANT SET ON PARAMETER wal_compression TO ${pg.escapeIdentifier(role)}`);
      expect(await batchWalCompression(new Db(plain)), 'granted SET').to.be.oneOf(['lz4', 'pglz']);
    } finally {
      await plain.destroy();
    }
    await t.knex.raw(`ALTER DATABASE ${pg.escapeIdentifier(testDatabaseName('backfill_walc'))} SET wal_compression = 'pglz'`);
    const fresh = knexFor(t.url, 1);
    try {
      expect(await batchWalCompression(new Db(fresh)), "the database's own setting").to.equal(null);
    } finally {
      await fresh.destroy();
    }
  });
});
