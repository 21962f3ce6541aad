import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { cliProject, jsonOut } from './cli-support.js';
import { useTestDatabase } from './support/pg.js';

describe('`create` never writes a runnable file with invented values', function () {
  this.timeout(120_000);
  const t = useTestDatabase('create_draft', async ({ knex }) => {
    await knex.raw(`CREATE TABLE users (id bigint PRIMARY KEY, name text)`);
  });

  it('refuses missing required parameters by their flags; --draft writes a draft that `up` refuses until it is filled in', async () => {
    const { knex, url } = t;
    const p = cliProject('create-draft', { type: 'module' }, url);
    p.write('umzug.config.ts', `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } }, migrations: 'migrations/*.ts', logger: null };\n`);
    p.write('tsconfig.json', '{}');
    const refused = await p.run(['create', '--name', 'users-email', '--template', 'add-column', '--table', 'users']);
    expect(refused.code).to.not.equal(0);
    expect(refused.stderr).to.match(/template "add-column" needs --column.*--type.*not given\. Nothing was written/s);
    expect(p.files('migrations')).to.deep.equal([]);

    const drafted = await p.run(['create', '--name', 'users-email', '--template', 'add-column', '--table', 'users', '--draft', '--json']);
    expect(drafted.code, drafted.stderr).to.equal(0);
    const made = jsonOut<{ created: string[]; placeholders: string[] }>(drafted);
    expect(made.placeholders).to.deep.equal(['column.name', 'column.type']);
    const text = readFileSync(made.created[0]!, 'utf8');
    expect(path.extname(made.created[0]!), 'a TypeScript project gets .ts').to.equal('.ts');
    expect(text).to.match(/draft: 'fill in column\.name, column\.type'/).and.to.include('TODO');

    const up = await p.run(['up']);
    expect(up.code).to.not.equal(0);
    expect(up.stderr + up.stdout).to.match(/is a draft \(fill in column\.name, column\.type\).*Nothing was run/s);
    const cols = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'users'`);
    expect(cols.rows[0]!.n, 'the draft changed nothing').to.equal(2);
  });

  it('with no migration yet, the file gets the extension the migrations glob asks for (README config, no tsconfig)', async () => {
    const p = cliProject('create-ext', { type: 'module' }, t.url);
    p.write('umzug.config.mjs', `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } }, migrations: 'migrations/*.ts', logger: null };\n`);
    const r = await p.run(['create', '--name', 'users-rename', '--template', 'rename-column', '--table', 'users', '--from', 'name', '--to', 'full_name', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(path.extname(jsonOut<{ created: string[] }>(r).created[0]!)).to.equal('.ts');
  });
});
