import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { BIN, cliProject, jsonOut } from './cli-support.js';
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

  it('on a terminal, asks for the required parameters not given (and writes nothing when one is left empty)', async () => {
    const p = cliProject('create-ask', { type: 'module' }, t.url);
    p.write('umzug.config.mjs', `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } }, logger: null };\n`);
    // `script` gives the command a pseudo-terminal; the answers go to it as typed input.
    const onTerminal = (args: string[], answers: string) =>
      new Promise<{ code: number; out: string }>((resolve) => {
        const cmd = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
        const child = execFile('script', ['-qec', cmd, '/dev/null'], { cwd: p.dir, env: { ...process.env, DATABASE_URL: t.url } }, (err, stdout) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout }),
        );
        child.stdin!.end(answers);
      });
    const asked = await onTerminal(['create', '--name', 'users-email', '--template', 'add-column', '--table', 'users'], 'email\ntext\n');
    expect(asked.code, asked.out).to.equal(0);
    expect(asked.out).to.match(/--column[^\n]*:/).and.to.match(/--type[^\n]*:/);
    const [file] = p.files('migrations');
    const text = readFileSync(path.join(p.dir, 'migrations', file!), 'utf8');
    expect(text).to.include(`name: 'email'`).and.to.include(`type: 'text'`).and.not.to.include('TODO');
    const left = await onTerminal(['create', '--name', 'users-more', '--template', 'add-column', '--table', 'users'], '\n\n');
    expect(left.code).to.not.equal(0);
    expect(left.out).to.match(/needs --column.*not given\. Nothing was written/s);
    expect(p.files('migrations')).to.have.length(1);
  });

  it('with no migration yet, the file gets the extension the migrations glob asks for (README config, no tsconfig)', async () => {
    const p = cliProject('create-ext', { type: 'module' }, t.url);
    p.write('umzug.config.mjs', `export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 2 } }, migrations: 'migrations/*.ts', logger: null };\n`);
    const r = await p.run(['create', '--name', 'users-rename', '--template', 'rename-column', '--table', 'users', '--from', 'name', '--to', 'full_name', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(path.extname(jsonOut<{ created: string[] }>(r).created[0]!)).to.equal('.ts');
  });
});
