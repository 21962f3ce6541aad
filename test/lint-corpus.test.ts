import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { lintFiles } from '../lib/ops/lint.js';
import { RULES } from '../lib/lint/rules.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CORPUS = path.join(here, 'fixtures/lint-corpus');
const KNEX_CORPUS = path.join(here, 'fixtures/lint-corpus-knex');
const run = promisify(execFile);

// Each rule's unsafe and safe example (test/fixtures/lint-corpus/<rule>.{unsafe,safe}.sql), linted by us and by
// squawk (squawk-cli, pinned, installed by scripts/squawk.sh) side by side.
describe('lint corpus: every error rule catches its unsafe example and passes its safe one; squawk agrees where it has the rule', function () {
  this.timeout(60_000);
  const files = readdirSync(CORPUS).filter((f) => f.endsWith('.sql'));
  const rules = [...new Set(files.map((f) => f.replace(/\.(un)?safe\.sql$/, '')))];
  let squawk: Map<string, Set<string>>;
  before(async () => {
    // squawk, pinned, installed once outside the repo by the project's script (see scripts/squawk.sh for why).
    const squawkBin = (await run('bash', [path.resolve(here, '../scripts/squawk.sh')])).stdout.trim();
    // squawk exits 1 when it finds something; its JSON report is on stdout either way.
    const r = await run(squawkBin, ['--reporter', 'json', ...files], { cwd: CORPUS }).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
    squawk = new Map();
    for (const x of JSON.parse(r.stdout) as { file: string; rule_name: string }[]) squawk.set(path.basename(x.file), (squawk.get(path.basename(x.file)) ?? new Set()).add(x.rule_name));
  });

  it('covers every error-level rule', () => {
    expect(rules.sort()).to.deep.equal(RULES.filter((r) => r.level === 'error').map((r) => r.id).sort());
  });

  for (const rule of rules) {
    it(rule, async () => {
      const unsafe = await lintFiles([path.join(CORPUS, `${rule}.unsafe.sql`)], { cwd: CORPUS });
      expect(unsafe.findings.map((f) => f.rule), 'ours on the unsafe example').to.include(rule);
      const safe = await lintFiles([path.join(CORPUS, `${rule}.safe.sql`)], { cwd: CORPUS });
      expect(safe.findings.map((f) => `${f.rule}: ${f.message}`), 'ours on the safe example').to.deep.equal([]);
      const counterpart = RULES.find((r) => r.id === rule)!.squawk;
      if (counterpart) {
        expect([...(squawk.get(`${rule}.unsafe.sql`) ?? [])], 'squawk on the unsafe example').to.include(counterpart);
        expect([...(squawk.get(`${rule}.safe.sql`) ?? [])], 'squawk on the safe example').not.to.include(counterpart);
      }
    });
  }

  // The same operations written with Knex's schema builder (test/fixtures/lint-corpus-knex/<rule>.cjs): captured
  // through the recorder, each caught by its rule.
  for (const file of readdirSync(KNEX_CORPUS).filter((f) => f.endsWith('.cjs'))) {
    const rule = file.replace(/\.cjs$/, '');
    it(`${rule}, written with Knex's builders`, async () => {
      const r = await lintFiles([path.join(KNEX_CORPUS, file)], { cwd: KNEX_CORPUS, style: 'knex' });
      expect(r.files[0]!.captureError).to.equal(undefined);
      expect(r.findings.map((f) => f.rule)).to.include(rule);
    });
  }
});
