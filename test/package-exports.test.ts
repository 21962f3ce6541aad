import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('the built package (tsc → ESM and CommonJS, with .d.ts)', function () {
  let out: string;
  before(async () => {
    // Inside the project, so that the built files resolve pg, umzug and knex from its node_modules.
    mkdirSync(path.join(root, '.build-test'), { recursive: true });
    out = mkdtempSync(path.join(root, '.build-test', 'out-'));
    const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
    await run(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', path.join(out, 'esm')], { cwd: root });
    await run(process.execPath, [tsc, '-p', 'tsconfig.cjs.json', '--outDir', path.join(out, 'cjs')], { cwd: root });
  });

  after(() => rmSync(out, { recursive: true, force: true }));

  it('loads with require() from CommonJS and with import from ESM, exposing the same API', async () => {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path.join(out, 'cjs/package.json'), '{"type":"commonjs"}');
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
    const { existsSync } = await import('node:fs');
    expect(existsSync(path.join(out, 'esm/index.d.ts'))).to.equal(true);
    expect(existsSync(path.join(out, 'cjs/index.d.ts'))).to.equal(true);
  });
});
