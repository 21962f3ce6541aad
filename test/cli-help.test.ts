import { expect } from 'chai';
import { cliProject } from './cli-support.js';

describe('`umzug --help` works in a fresh project with no config and no database', function () {
  this.timeout(120_000);
  const COMMANDS = ['up', 'down', 'pending', 'executed', 'create', 'status', 'backfill', 'flag', 'report', 'purge', 'plan', 'verify', 'rehearse', 'adopt', 'lint', 'refs'];

  it('the top-level help and every command’s help exit 0 and describe the command; a real command still says what is missing', async () => {
    // No umzug.config.*, no knexfile, DATABASE_URL unset: nothing to connect to.
    const p = cliProject('help', { type: 'module' }, '');
    const top = await p.run(['--help'], { DATABASE_URL: undefined }, { spawn: true });
    expect(top.code, top.stderr).to.equal(0);
    for (const c of COMMANDS) expect(top.stdout).to.match(new RegExp(`\\b${c}\\b`));
    // One after another: in-process, each a fraction of a spawn's cost (run() spawns a command started while another runs).
    const pages = [];
    for (const c of COMMANDS) pages.push(await p.run([c, '--help'], { DATABASE_URL: undefined }));
    pages.forEach((r, i) => {
      expect(r.code, `${COMMANDS[i]} --help: ${r.stderr}`).to.equal(0);
      expect(r.stdout, COMMANDS[i]).to.match(new RegExp(`usage: umzug ${COMMANDS[i]}`));
      expect(r.stderr + r.stdout, COMMANDS[i]).to.not.match(/: error:|sprintf|Error:/);
    });
    // `create --template X --help` lists that template's parameters only; `create --list` every template.
    const addIndex = await p.run(['create', '--template', 'add-index', '--help'], { DATABASE_URL: undefined });
    expect(addIndex.code, addIndex.stderr).to.equal(0);
    expect(addIndex.stdout).to.match(/--table VALUE\s+required/).and.to.match(/--columns VALUE\[,VALUE…\]\s+required/).and.to.match(/--unique\s+optional/);
    expect(addIndex.stdout).to.not.match(/--from|--drop-sources/);
    const list = await p.run(['create', '--list'], { DATABASE_URL: undefined });
    expect(list.code, list.stderr).to.equal(0);
    for (const t of ['add-column', 'rename-column', 'change-type', 'merge-tables', 'sql']) expect(list.stdout).to.match(new RegExp(`^  ${t}\\b`, 'm'));
    // A usage error (unknown flag or command) is exit code 2, as for a missing database.
    for (const bad of [['up', '--nope'], ['bogus']]) {
      const r = await p.run(bad, { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' });
      expect(r.code, `${bad.join(' ')}: ${r.stderr}`).to.equal(2);
    }
    const status = await p.run(['status'], { DATABASE_URL: undefined });
    expect(status.code).to.equal(2);
    expect(status.stderr).to.match(/neither --database-url nor DATABASE_URL is set/);
  });
});
