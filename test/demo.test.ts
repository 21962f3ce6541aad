import { expect } from 'chai';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// The README's first command: it must keep working on the embedded PostgreSQL it ships with (PGlite follows
// PostgreSQL's newest major, which the server-side tests do not run on).
describe('the demo (`npm run demo`, PGlite through knex-pglite)', function () {
  this.timeout(120_000);
  it('renames a column under old- and new-version writers with no writer error and no disagreement, through expand → contract → down → down → up', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'demo/rename-column.ts'], {
      cwd: root,
      // A smaller table than the demo's 20 000 rows: the same phases and checks in about half the time (PGlite's own start is the rest).
      env: { ...process.env, DEMO_ROWS: '4000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((res) => child.on('exit', res));
    expect(code, out).to.equal(0);
    expect(out).to.match(/on embedded PostgreSQL \(PGlite\)/);
    expect(out).to.match(/expand verify: \d+ rows checked, 0 mismatches/);
    expect(out).to.match(/contract: create the archive .* of public\.users\.name/);
    expect(out).to.match(/contract: drop name \(ending its archive's trigger under the same lock\), give full_name its name/);
    expect(out).to.match(/undoContract verify: \d+ rows checked, 0 mismatches/);
    expect(out.match(/rows where name and full_name disagree: (\d+)/g)).to.have.length.greaterThan(2);
    expect(out).to.not.match(/rows where name and full_name disagree: [1-9]/);
    expect(out).to.match(/No writer saw an error; old and new columns agreed at every check\./);
  });
});
