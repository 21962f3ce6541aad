import { expect } from 'chai';
import { isWidening } from '../lib/changes/change-column-type.js';

describe('changeColumnType: which default casts give every value back exactly (plan tier)', () => {
  it('widening integer, float and varchar casts are exact; narrowing, typmods and other families are not', () => {
    const exact: [string, string][] = [
      ['integer', 'bigint'],
      ['smallint', 'int4'],
      ['int2', 'NUMERIC'],
      ['integer', 'numeric'],
      ['real', 'double precision'],
      ['character varying(20)', 'text'],
      ['character varying(20)', 'varchar'],
      ['character varying', 'text'],
    ];
    const lossy: [string, string][] = [
      ['bigint', 'integer'],
      ['integer', 'integer'],
      ['integer', 'numeric(12,2)'],
      ['numeric', 'bigint'],
      ['double precision', 'real'],
      ['text', 'character varying(20)'],
      ['character varying(20)', 'character varying(10)'],
      ['text', 'integer'],
      ['timestamp without time zone', 'timestamp with time zone'],
      ['integer', 'text'],
    ];
    for (const [f, t] of exact) expect(isWidening(f, t), `${f} → ${t}`).to.equal(true);
    for (const [f, t] of lossy) expect(isWidening(f, t), `${f} → ${t}`).to.equal(false);
  });
});
