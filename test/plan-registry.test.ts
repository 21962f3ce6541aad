import { expect } from 'chai';
import * as api from '../lib/index.js';
import { CHANGE_CONSTRUCTORS, CHANGE_SCHEMAS } from '../lib/changes/registry.js';
import { loadTemplates, templateParams } from '../lib/ops/create.js';

const construct = (kind: string, options: unknown) => () => (CHANGE_CONSTRUCTORS[kind] as (o: unknown) => unknown)(options);

describe('change constructors: one registry behind templates and the root export (plan tier)', () => {
  it('every template names a registered constructor, and every registered constructor is exported by the package', () => {
    for (const [name, schema] of loadTemplates()) expect(CHANGE_CONSTRUCTORS, `template ${name}`).to.have.property(schema['x-change']);
    const exported = api as unknown as Record<string, unknown>;
    for (const [name, ctor] of Object.entries(CHANGE_CONSTRUCTORS)) expect(exported[name], name).to.equal(ctor);
  });

  it('every change but the Mongo move has one options schema, and its constructor validates with that schema', () => {
    const described = CHANGE_SCHEMAS.map((s) => s['x-change']).sort();
    expect(described).to.deep.equal(Object.keys(CHANGE_CONSTRUCTORS).filter((k) => k !== 'mongoToPostgres').sort());
    for (const schema of CHANGE_SCHEMAS) {
      const kind = schema['x-change'];
      // A complete, valid set of options: the template's placeholders, or (no template) a hand-written one.
      const valid = schema['x-template']
        ? templateParams(schema['x-template'], new Map()).params
        : { table: 't', columns: [{ name: 'id', type: 'bigint' }], primaryKey: ['id'] };
      expect(construct(kind, valid), kind).not.to.throw();
      // An option the schema does not list is refused by name…
      expect(construct(kind, { ...valid, colour: 'red' }), kind).to.throw(api.ChangeInputError, new RegExp(`^${kind}: colour is not an option`));
      // …and so is each required one left out, and each given the wrong type.
      for (const key of schema.required ?? []) {
        const without = { ...valid } as Record<string, unknown>;
        delete without[key];
        expect(construct(kind, without), `${kind} without ${key}`).to.throw(api.ChangeInputError, new RegExp(`${key} is required`));
        expect(construct(kind, { ...valid, [key]: 42 }), `${kind} ${key}: 42`).to.throw(api.ChangeInputError, new RegExp(`${kind}: ${key} must be`));
      }
    }
  });

  it('names the field and the value in words: a list, a table, a length, an enum', () => {
    expect(construct('addIndex', { table: 'users', columns: [] })).to.throw(/^addIndex: columns must list at least 1, got \[\]$/);
    expect(construct('addIndex', { table: 'users', columns: ['a', 'a'] })).to.throw(/columns names the same item twice/);
    expect(construct('renameColumn', { table: { name: 'users' }, from: 'a', to: 'b' })).to.throw(/table.schema is required/);
    expect(construct('renameColumn', { table: 42, from: 'a', to: 'b' })).to.throw(/table must be a string or \{ schema, name \}, got 42/);
    expect(construct('renameColumn', { table: 'users', from: 'a', to: 'b'.repeat(64) })).to.throw(/to is longer than 63 characters/);
    expect(construct('addForeignKey', { table: 'a', columns: ['x'], references: { table: 'b', columns: ['id'] }, onDelete: 'explode' })).to.throw(/onDelete must be one of "NO ACTION", "RESTRICT", "CASCADE"/);
    expect(construct('addForeignKey', { table: 'a', columns: ['x'], references: { table: 'b', columns: ['id'] }, onDelete: 'cascade' })).not.to.throw();
    expect(construct('createTable', { table: 't', columns: [{ name: 'id' }], primaryKey: ['id'] })).to.throw(/columns\[0\]\.type is required/);
    expect(construct('mergeTables', { from: ['a'], into: 'c', key: ['id'] })).to.throw(/from must list at least 2/);
    expect(construct('sql', { up: 'SELECT 1', down: ['SELECT 1', ''] })).to.throw(/down\[1\] must be a non-empty string, got ""/);
  });
});
