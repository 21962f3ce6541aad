import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime } from '../lib/index.js';
import { diffSnapshots } from '../lib/postgres/snapshot.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';
import { expectExactRoundTrip, takeState } from './support/db-state.js';

describe('up → down → up leaves schema and data as they were (renameColumn, addColumn)', function () {
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ knex, db } = await openTestDatabase('roundtrip'));
    await knex.raw(`CREATE TABLE accounts (id int PRIMARY KEY, handle varchar(40) NOT NULL DEFAULT 'x', note text)`);
    await knex.raw(`COMMENT ON TABLE accounts IS 'people'`);
    await knex.raw(`INSERT INTO accounts SELECT g, 'h' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 5000) g`);
  });
  after(() => knex?.destroy());

  it('restores the schema snapshot and the per-table checksums exactly', async () => {
    const project = tempProject('roundtrip');
    project.write(
      '001.rename.ts',
      `import { defineMigration, renameColumn, addColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [
  renameColumn({ table: 'accounts', from: 'handle', to: 'username' }),
  addColumn({ table: 'accounts', column: { name: 'score', type: 'integer', nullable: false, default: 0 } }),
] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    await expectExactRoundTrip(umzug, () => takeState(db, ['public']), {
      contracted: (contracted, before) => expect(diffSnapshots(before.schema, contracted.schema)).to.not.deep.equal([]),
    });
  });
});
