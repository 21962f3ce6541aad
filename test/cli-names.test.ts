import { expect } from 'chai';
import { zeroDowntime } from '../lib/index.js';
import { silentLogger, useTestDatabase } from './support/pg.js';
import { renameProject } from './support/project.js';
import { spawnBin, jsonOut } from './cli-support.js';

describe('`up --name` / `down --name` / `--to` take a typed file as written, without its :expand/:contract suffix', function () {
  this.timeout(120_000);
  const t = useTestDatabase('cli_names', async ({ knex }) => {
    await knex.raw(`CREATE TABLE items (id bigint PRIMARY KEY, title text)`);
    await knex.raw(`INSERT INTO items SELECT g, 't' || g FROM generate_series(1, 500) g`);
  });

  it('runs the file’s pending phase up, its newest applied phase down, and `down --to` the whole file', async () => {
    const { knex, url } = t;
    const p = renameProject('names', { file: '001.items-name.ts', table: 'items', from: 'title', to: 'name' });
    p.write('002.other.ts', `import { defineMigration, addColumn } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [addColumn({ table: 'items', column: { name: 'note', type: 'text' } })] });\n`);
    const umzug = zeroDowntime({ knex, cwd: p.dir, contract: { after: 0 }, logger: silentLogger, backfill: { canary: false } });
    try {
      expect((await umzug.up({ migrations: ['001.items-name.ts'] })).map((m) => m.name)).to.deep.equal(['001.items-name.ts:expand']);
      expect((await umzug.up({ migrations: ['001.items-name.ts'] })).map((m) => m.name)).to.deep.equal(['001.items-name.ts:contract']);
      expect((await umzug.down({ migrations: ['001.items-name.ts'] })).map((m) => m.name)).to.deep.equal(['001.items-name.ts:contract']);
      await umzug.up({ migrations: ['002.other.ts'] });
      expect((await umzug.down({ to: '001.items-name.ts' })).map((m) => m.name)).to.deep.equal(['002.other.ts:expand', '001.items-name.ts:expand']);
    } finally {
      await umzug.close();
    }
    // Through the bin, as a pipeline writes it.
    const run = spawnBin(p.dir, url, ['up', '--name', '001.items-name.ts', '--json']);
    expect(await run.exited, run.output()).to.equal(0);
    expect(jsonOut<{ applied: string[] }>(run.stdout()).applied).to.deep.equal(['001.items-name.ts:expand']);
  });
});
