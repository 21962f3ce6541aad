import { expect } from 'chai';
import * as api from '../lib/index.js';
import { CHANGE_CONSTRUCTORS } from '../lib/changes/registry.js';
import { loadTemplates } from '../lib/ops/create.js';

describe('change constructors: one registry behind templates and the root export (plan tier)', () => {
  it('every template names a registered constructor, and every registered constructor is exported by the package', () => {
    for (const [name, schema] of loadTemplates()) expect(CHANGE_CONSTRUCTORS, `templates/${name}.json`).to.have.property(schema['x-change']);
    const exported = api as unknown as Record<string, unknown>;
    for (const [name, ctor] of Object.entries(CHANGE_CONSTRUCTORS)) expect(exported[name], name).to.equal(ctor);
  });
});
