import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime } from '../lib/index.js';
import { dataChecksums, diffChecksums, diffSnapshots, schemaSnapshot } from '../lib/postgres/snapshot.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';

describe('up → down → up leaves schema and data as they were (renameColumn, addColumn)', function () {
  let knex: Knex;
  let db: Db;
  before(async () => {
    const url = await freshDatabase('roundtrip');
    knex = knexFor(url);
    db = new Db(knex);
    await knex.raw(`CREATE TABLE accounts (id int PRIMARY KEY, handle varchar(40) NOT NULL DEFAULT 'x', note text)`);
    await knex.raw(`COMMENT ON TABLE accounts IS 'people'`);
    await knex.raw(`INSERT INTO accounts SELECT g, 'h' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, 5000) g`);
  });
  after(() => knex?.destroy());

  const snap = () => db.withConnection(async (c) => ({ schema: await schemaSnapshot(c, ['public']), data: await dataChecksums(c, ['public']) }));

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
    const umzug = zeroDowntime({ knex, cwd: project.dir, contract: { after: 0 }, logger: silentLogger });
    const before = await snap();
    await umzug.up();
    await umzug.up();
    const contracted = await snap();
    expect(diffSnapshots(before.schema, contracted.schema)).to.not.deep.equal([]);
    await umzug.down();
    await umzug.down();
    const after = await snap();
    expect(diffSnapshots(before.schema, after.schema)).to.deep.equal([]);
    expect(diffChecksums(before.data, after.data)).to.deep.equal([]);
    await umzug.up();
    await umzug.up();
    const again = await snap();
    expect(diffSnapshots(contracted.schema, again.schema)).to.deep.equal([]);
    expect(diffChecksums(contracted.data, again.data)).to.deep.equal([]);
  });
});
