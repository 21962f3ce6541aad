import { expect } from 'chai';
import type { Knex } from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { freshDatabase, knexFor, silentLogger } from './support/pg.js';
import { tempProject } from './support/project.js';

describe('plain Umzug and Knex migrations beside typed ones', function () {
  let knex: Knex;
  before(async () => {
    knex = knexFor(await freshDatabase('engine_plain'));
  });
  after(() => knex?.destroy());

  const tables = async () =>
    (await knex.raw<{ rows: { t: string }[] }>(`SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`)).rows.map(
      (r) => r.t,
    );

  it('runs them in file order with the typed phases, and reverts the newest phase first', async () => {
    const p = tempProject('plain');
    p.write(
      '001.create-users.ts',
      `import type { ZeroDowntimeContext } from 'umzug-zero-downtime';
export const up = async ({ context }: { context: ZeroDowntimeContext }) => {
  await context.knex.schema.createTable('users', (t) => { t.increments('id'); t.text('name').notNullable(); });
  await context.knex('users').insert([{ name: 'ada' }, { name: 'alan' }]);
};
export const down = async ({ context }: { context: ZeroDowntimeContext }) => { await context.knex.schema.dropTable('users'); };
`,
    );
    p.write(
      '002.rename.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'display_name' })] });
`,
    );
    p.write(
      '003.audit.mjs',
      `export async function up({ context }) { await context.knex.schema.createTable('audit', (t) => { t.increments('id'); }); }
export async function down({ context }) { await context.knex.schema.dropTable('audit'); }
`,
    );
    const umzug = zeroDowntime({ knex, cwd: p.dir, contract: { after: 0 }, logger: silentLogger });
    expect((await umzug.pending()).map((m) => m.name)).to.deep.equal(['001.create-users.ts', '002.rename.ts:expand', '003.audit.mjs']);
    const first = await umzug.up();
    expect(first.map((m) => m.name)).to.deep.equal(['001.create-users.ts', '002.rename.ts:expand', '003.audit.mjs']);
    expect(umzug.lastGated.map((g) => g.name)).to.deep.equal(['002.rename.ts:contract']);
    expect(await tables()).to.deep.equal(['audit', 'users']);
    const second = await umzug.up();
    expect(second.map((m) => m.name)).to.deep.equal(['002.rename.ts:contract']);
    expect((await umzug.executed()).map((m) => m.name)).to.deep.equal([
      '001.create-users.ts',
      '002.rename.ts:expand',
      '003.audit.mjs',
      '002.rename.ts:contract',
    ]);
    // down reverts what ran last: the contract, not the file that sorts last.
    expect((await umzug.down()).map((m) => m.name)).to.deep.equal(['002.rename.ts:contract']);
    expect((await umzug.down()).map((m) => m.name)).to.deep.equal(['003.audit.mjs']);
    await umzug.down({ to: 0 });
    expect(await tables()).to.deep.equal([]);
  });

  it('calls knex-style files with the Knex instance when plainMigrations is "knex"', async () => {
    const p = tempProject('knexstyle');
    p.write(
      '001.knex-style.cjs',
      `exports.up = function (knex) { return knex.schema.createTable('legacy', (t) => { t.increments('id'); }); };
exports.down = function (knex) { return knex.schema.dropTable('legacy'); };
`,
    );
    const umzug = zeroDowntime({ knex, cwd: p.dir, stateSchema: 'zd_knexstyle', plainMigrations: 'knex', logger: silentLogger });
    await umzug.up();
    expect(await tables()).to.include('legacy');
    await umzug.down();
    expect(await tables()).to.not.include('legacy');
  });

  it('keeps a gated contract out of `up` and explains why', async () => {
    await knex.raw(`CREATE TABLE gated (id int PRIMARY KEY, a text)`);
    const p = tempProject('gated');
    p.write(
      '001.gated.ts',
      `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: 'gated', from: 'a', to: 'b' })] });
`,
    );
    const logged: Record<string, unknown>[] = [];
    const umzug = zeroDowntime({
      knex,
      cwd: p.dir,
      stateSchema: 'zd_gated',
      contract: { after: '7d' },
      logger: { ...silentLogger, info: (m: Record<string, unknown>) => void logged.push(m) },
    });
    await umzug.up();
    const again = await umzug.up();
    expect(again).to.deep.equal([]);
    const waiting = logged.filter((m) => m.event === 'contract-waiting');
    expect(waiting).to.have.length(2);
    expect(String((waiting[1]!.reasons as string[])[0])).to.match(/safety window until .* \((6d 23h|7d 0h) left\)/);
    const status = await umzug.status();
    expect(status.migrations[0]!.contract).to.equal('waiting');
  });

  it('a contract with nothing to do (addIndex, a nullable addColumn) has no safety window: the next `up` runs it', async () => {
    await knex.raw(`CREATE TABLE empty_contract (id int PRIMARY KEY, a text)`);
    const p = tempProject('empty-contract');
    p.write(
      '001.index.ts',
      `import { defineMigration, addIndex, addColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [addIndex({ table: 'empty_contract', columns: ['a'] }), addColumn({ table: 'empty_contract', column: { name: 'note', type: 'text' } })] });
`,
    );
    const umzug = zeroDowntime({ knex, cwd: p.dir, stateSchema: 'zd_empty_contract', contract: { after: '7d' }, logger: silentLogger });
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal(['001.index.ts:expand']);
    expect((await umzug.up()).map((m) => m.name), 'not held for 7 days').to.deep.equal(['001.index.ts:contract']);
  });
});
