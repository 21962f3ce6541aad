import { expect } from 'chai';
import { cliProject, jsonOut } from './cli-support.js';
import { useTestDatabase } from './support/pg.js';

describe('read-only commands create nothing on a database the tool never ran on', function () {
  this.timeout(180_000);
  const t = useTestDatabase('read_only', async ({ knex }) => {
    await knex.raw(`CREATE TABLE users (id bigint PRIMARY KEY, name text)`);
    await knex.raw(`INSERT INTO users SELECT g, 'n' || g FROM generate_series(1, 200) g`);
  });

  const schemas = async () =>
    (await t.knex.raw<{ rows: { nspname: string }[] }>(`SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%' ORDER BY 1`)).rows.map((r) => r.nspname);

  it('pending, executed, status, plan, verify and flag list leave no state schema; up then creates it and works', async () => {
    const p = cliProject('read-only', { type: 'module' }, t.url);
    p.write('migrations/001.rename.ts', `import { defineMigration, renameColumn } from 'umzug-zero-downtime';\nexport default defineMigration({ changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name' })] });\n`);
    for (const args of [['pending', '--json'], ['executed', '--json'], ['status', '--json'], ['plan', '--json'], ['verify', '--json'], ['flag', 'list', '--json']]) {
      const r = await p.run(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
      expect(await schemas(), `${args[0]} created nothing`).to.deep.equal([]);
    }
    const up = await p.run(['up', '--canary', 'off']);
    expect(up.code, up.stderr).to.equal(0);
    expect(await schemas()).to.deep.equal(['zero_downtime']);
    // The contract waits (24 h safety window by default): `pending` lists it, with why.
    const pending = jsonOut<{ name: string; waiting?: { reasons: string[]; opensAt: string | null } }[]>(await p.run(['pending', '--json']));
    expect(pending.map((m) => m.name)).to.deep.equal(['001.rename.ts:contract']);
    expect(pending[0]!.waiting!.reasons.join(' ')).to.match(/safety window until/);
    const text = await p.run(['pending']);
    expect(text.stdout).to.match(/001\.rename\.ts:contract \(waiting: /);
  });
});
