import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freshDatabase } from './support/pg.js';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('the built package (tsc → ESM and CommonJS, with .d.ts) and the published one: publint, arethetypeswrong, subpath entries, a light /flags', function () {
  let tarball: string;
  let dir: string;
  const out = path.join(root, 'dist');
  // One build for every test here: the one `npm pack` publishes (tsc twice, the costliest step of this file).
  before(async () => {
    await run('npm', ['run', 'build'], { cwd: root });
    mkdirSync(path.join(root, '.build-test'), { recursive: true });
    dir = mkdtempSync(path.join(root, '.build-test', 'pack-'));
    const packed = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: root });
    tarball = path.join(dir, packed.stdout.trim().split('\n').pop()!);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('loads with require() from CommonJS and with import from ESM, exposing the same API', async () => {
    const cjs = await run(process.execPath, ['-e', `const m = require(${JSON.stringify(path.join(out, 'cjs/index.js'))}); console.log(Object.keys(m).sort().join(','))`], {
      cwd: root,
    });
    const esm = await run(
      process.execPath,
      ['--input-type=module', '-e', `const m = await import(${JSON.stringify('file://' + path.join(out, 'esm/index.js'))}); console.log(Object.keys(m).sort().join(','))`],
      { cwd: root },
    );
    expect(cjs.stdout.trim()).to.equal(esm.stdout.trim());
    for (const name of ['defineMigration', 'zeroDowntime', 'addColumn', 'renameColumn', 'ZeroDowntimeUmzug']) {
      expect(cjs.stdout.trim().split(',')).to.include(name);
    }
    expect(existsSync(path.join(out, 'esm/index.d.ts'))).to.equal(true);
    expect(existsSync(path.join(out, 'cjs/index.d.ts'))).to.equal(true);
  });

  it('publint finds nothing to fix (warnings count as errors)', async () => {
    const r = await run(process.execPath, [path.join(root, 'node_modules/publint/src/cli.js'), '--pack', 'false', '--strict'], { cwd: root });
    expect(r.stdout).to.not.match(/Errors:|Warnings:/);
  });

  it('arethetypeswrong: every entry (root, /flags, /openfeature, /mongo, /monitor, /ops) resolves with types from CommonJS, ESM and bundlers', async () => {
    // node16 profile: the subpaths need `exports`, which node10-style resolution does not read.
    const attw = path.join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js');
    const r = await run(process.execPath, [attw, tarball, '--profile', 'node16', '--format', 'json'], { cwd: root }).catch((e: { stdout: string }) => e);
    const report = JSON.parse(r.stdout) as { analysis: { problems?: { resolutionKind?: string }[]; entrypoints: Record<string, unknown> } };
    const problems = (report.analysis.problems ?? []).filter((p) => p.resolutionKind !== 'node10');
    expect(problems, JSON.stringify(problems)).to.deep.equal([]);
    expect(Object.keys(report.analysis.entrypoints).sort()).to.deep.equal(['.', './flags', './mongo', './monitor', './openfeature', './ops', './package.json']);
  });

  it('the built bin, run by plain node, loads a TypeScript config and migrations through tsx on first need', async () => {
    const url = await freshDatabase('pack_bin_ts');
    const project = mkdtempSync(path.join(dir, 'ts-project-'));
    mkdirSync(path.join(project, 'migrations'));
    // No package.json: a CommonJS TypeScript config, which tsx's ESM hook alone hands to require() unchanged.
    writeFileSync(
      path.join(project, 'umzug.config.ts'),
      `const glob: string = 'migrations/*.ts';\nexport default { knex: { client: 'pg', connection: ${JSON.stringify(url)}, pool: { min: 0, max: 2 } }, migrations: glob, logger: null };\n`,
    );
    writeFileSync(path.join(project, 'migrations', '001.plain.ts'), `export const up = async (): Promise<void> => {};\nexport const down = async (): Promise<void> => {};\n`);
    const r = await run(process.execPath, [path.join(root, 'dist/esm/cli/bin.js'), 'pending', '--json'], { cwd: project });
    expect(r.stdout).to.match(/001\.plain\.ts/);
  });

  it('the CommonJS build runs a project from require(): a plain migration loaded, linted (a lazily imported op) and run', async () => {
    // dist/cjs is esbuild's transpile of lib/ (scripts/build-cjs.mjs), not a second tsc program: this is where its
    // dynamic import() of its own CommonJS files and the import-module loader are used, not only its export list.
    const url = await freshDatabase('pack_cjs');
    const project = mkdtempSync(path.join(dir, 'cjs-project-'));
    mkdirSync(path.join(project, 'migrations'));
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ type: 'commonjs' }));
    writeFileSync(path.join(project, 'migrations', '001.plain.js'), `exports.up = async ({ context }) => { await context.knex.raw('CREATE TABLE t (id int)'); };\nexports.down = async () => {};\n`);
    const script = `
      const { zeroDowntime } = require(${JSON.stringify(path.join(out, 'cjs/index.js'))});
      const knex = require('knex')({ client: 'pg', connection: ${JSON.stringify(url)}, pool: { min: 0, max: 2 } });
      const umzug = zeroDowntime({ knex, cwd: ${JSON.stringify(project)}, migrations: 'migrations/*.js', logger: null });
      (async () => {
        const pending = (await umzug.pending()).map((m) => m.name);
        await umzug.up();
        const tables = (await knex.raw("SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 't'")).rows[0].n;
        console.log(JSON.stringify({ pending, tables }));
        await umzug.close();
        await knex.destroy();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = await run(process.execPath, ['-e', script], { cwd: root });
    expect(JSON.parse(r.stdout)).to.deep.equal({ pending: ['001.plain.js'], tables: 1 });
  });

  it('the root types never name the optional mongodb package (a project without it type-checks with skipLibCheck off)', async () => {
    const { readFileSync, existsSync } = await import('node:fs');
    const seen = new Set<string>();
    const offenders: string[] = [];
    const walk = (file: string) => {
      if (seen.has(file) || !existsSync(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      if (/from ['"]mongodb['"]|import\(['"]mongodb['"]\)/.test(text)) offenders.push(path.relative(root, file));
      for (const m of text.matchAll(/from ['"](\.{1,2}\/[^'"]+)\.js['"]/g)) walk(path.resolve(path.dirname(file), `${m[1]}.d.ts`));
    };
    walk(path.join(root, 'dist/esm/index.d.ts'));
    expect(seen.size).to.be.greaterThan(20);
    expect(offenders).to.deep.equal([]);
  });

  it('/flags loads without Umzug, the engine, ajv, prom-client or OpenFeature', async () => {
    // Which modules a process loads: the package's own dist files and the packages it reaches.
    const script = `
      const m = await import(${JSON.stringify('file://' + path.join(root, 'dist/esm/public/flags.js'))});
      const { createRequire } = await import('node:module');
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({ exports: Object.keys(m).sort(), cjs: loaded.filter((f) => f.includes('node_modules')).map((f) => f.split('node_modules/').pop().split('/')[0]) }));`;
    const r = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root });
    const out = JSON.parse(r.stdout) as { exports: string[]; cjs: string[] };
    expect(out.exports).to.include.members(['flags', 'FlagClient', 'FlagStore', 'inRollout', 'withReadFlag']);
    for (const heavy of ['umzug', 'ajv', 'prom-client', '@openfeature', 'cli-progress', 'mongodb']) expect(out.cjs, heavy).to.not.include(heavy);
  });
});
