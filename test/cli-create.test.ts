import { expect } from 'chai';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as api from '../lib/index.js';
import { isDefinedMigration } from '../lib/migration.js';
import { loadTemplates, renderTemplate, templateFlags, templateParams, TemplateError } from '../lib/ops/create.js';
import { LIB_INDEX } from './support/project.js';

const EXPECTED = [
  'add-check',
  'add-column',
  'add-foreign-key',
  'add-index',
  'add-unique',
  'change-type',
  'derive-column',
  'drop-column',
  'drop-index',
  'drop-table',
  'merge-tables',
  'rename-column',
  'rename-table',
  'set-not-null',
  'split-table',
  'sql',
];

describe('create templates: one JSON Schema per change type, rendered for TypeScript, ESM and CommonJS', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zdt-cli-create-'));

  it('has a template for each change type, each naming its change constructor and a flag for every option', () => {
    const templates = loadTemplates();
    expect([...templates.keys()]).to.deep.equal(EXPECTED);
    for (const [name, schema] of templates) {
      expect(schema['x-change'], name).to.match(/^[a-z][A-Za-z]+$/);
      const flags = templateFlags(schema);
      expect(flags.length, name).to.be.greaterThan(0);
      expect(new Set(flags.map((f) => f.flag)).size, `${name}: one flag per option`).to.equal(flags.length);
    }
  });

  for (const name of EXPECTED) {
    it(`${name}: placeholders fill every missing option, the file loads as a migration whose change the constructor accepts`, async function () {
      const { params, placeholders } = templateParams(name, new Map());
      const schema = loadTemplates().get(name)!;
      const ctor = (api as unknown as Record<string, unknown>)[schema['x-change']];
      for (const format of ['ts', 'esm', 'cjs'] as const) {
        const text = renderTemplate(name, params, format, placeholders);
        expect(text).to.include(`${schema['x-change']}(`);
        if (placeholders.length > 0) expect(text, `${name} ${format}`).to.include('// TODO: placeholder');
        expect(text).to.include(format === 'cjs' ? `require('umzug-zero-downtime')` : `from 'umzug-zero-downtime'`);
      }
      if (typeof ctor !== 'function') {
        // The change type is not exported (yet): `create --template` refuses it before writing; nothing to load.
        this.skip();
      }
      const file = path.join(dir, `${name}.ts`);
      writeFileSync(file, renderTemplate(name, params, 'ts', placeholders).replaceAll(`'umzug-zero-downtime'`, JSON.stringify(LIB_INDEX)));
      const mod = (await import(pathToFileURL(file).href)) as { default: unknown };
      expect(isDefinedMigration(mod.default), name).to.equal(true);
      expect((mod.default as api.DefinedMigration).changes[0]!.kind).to.equal(schema['x-change']);
    });
  }

  it('turns flags into the option shapes: lists from commas or repeats, key=value records, negated booleans; SQL kept whole', () => {
    const derive = templateParams(
      'derive-column',
      new Map([
        ['--table', ['users']],
        ['--column', ['full_name']],
        ['--from', ['first_name,last_name']],
        ['--up', [`first_name || ', ' || last_name`]],
        ['--down', [`first_name=split_part(full_name, ', ', 1)`, `last_name=split_part(full_name, ', ', 2)`]],
        ['--drop-sources', ['true']],
      ]),
    );
    expect(derive.params).to.deep.equal({
      table: 'users',
      column: { name: 'full_name', type: 'text' },
      from: ['first_name', 'last_name'],
      up: `first_name || ', ' || last_name`,
      down: { first_name: `split_part(full_name, ', ', 1)`, last_name: `split_part(full_name, ', ', 2)` },
      dropSources: true,
    });
    expect(derive.placeholders).to.deep.equal([['column', 'type']]);
    const sql = templateParams('sql', new Map([['--up', ['SELECT 1, 2']], ['--down', ['SELECT 3']], ['--non-transactional', ['true']]]));
    expect(sql.params).to.deep.equal({ up: ['SELECT 1, 2'], down: ['SELECT 3'], transactional: false });
    const fk = templateParams('add-foreign-key', new Map([['--columns', ['a', 'b']]]), JSON.stringify({ references: { table: 'parents', columns: ['x', 'y'] } }));
    expect(fk.params).to.deep.include({ columns: ['a', 'b'], references: { table: 'parents', columns: ['x', 'y'] } });
  });

  it('renders strings safely: quotes, backslashes and ${…} in SQL cannot break out of the literal', async () => {
    const { params } = templateParams(
      'sql',
      new Map([
        ['--up', ["SELECT 'it''s', E'\\\\n', '`${process.exit(1)}`'"]],
        ['--down', ['SELECT 1']],
      ]),
    );
    const file = path.join(dir, 'quoted.ts');
    writeFileSync(file, renderTemplate('sql', params, 'ts').replaceAll(`'umzug-zero-downtime'`, JSON.stringify(LIB_INDEX)));
    const mod = (await import(pathToFileURL(file).href)) as { default: api.DefinedMigration };
    const desc = mod.default.changes[0]!.describe({ tables: {} }, { defaultSchema: 'public' });
    expect(desc.expand.steps[0]!.statements[0]!.text).to.equal("SELECT 'it''s', E'\\\\n', '`${process.exit(1)}`'");
  });

  it('names the bad field: wrong type, unknown option in --params, repeated single-valued flag, malformed record', () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).to.be.instanceOf(TemplateError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(err(() => templateParams('add-index', new Map(), '{"unique":"yes"}'))).to.match(/--unique \(unique\) must be boolean/);
    expect(err(() => templateParams('add-index', new Map(), '{"columnz":["a"]}'))).to.match(/columnz is not an option of this change/);
    expect(err(() => templateParams('rename-column', new Map([['--to', ['a', 'b']]])))).to.match(/--to was given 2 times/);
    expect(err(() => templateParams('derive-column', new Map([['--down', ['no-equals-sign']]])))).to.match(/--down takes key=value/);
    expect(err(() => templateParams('merge-tables', new Map([['--from', ['only_one']]])))).to.match(/--from \(from\) must NOT have fewer than 2 items/);
    expect(err(() => templateParams('nope', new Map()))).to.match(/unknown template "nope" \(known: add-check/);
  });
});
