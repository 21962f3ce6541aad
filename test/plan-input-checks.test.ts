import { expect } from 'chai';
import { addColumn, addCheck, deriveColumn } from '../lib/index.js';
import { loadSqlParser } from '../lib/postgres/sql-ast.js';

// The SQL an author writes into a typed change (an expression, a type name) is checked by PostgreSQL's own grammar
// once the parser is loaded (the engine loads it before it reads migration files): exactly one expression, exactly
// one type, where a character check let `text, b int` or `x FROM t` through.
describe('plan tier: a change\'s expressions and type names are checked by PostgreSQL\'s grammar', () => {
  before(() => loadSqlParser());

  it('one type name: accepts what PostgreSQL accepts, refuses a list, a clause or a second statement', () => {
    for (const type of ['text', 'numeric(10,2)', 'timestamptz[]', 'character varying(20)', 'double precision', 'public.my_type']) {
      expect(() => addColumn({ table: 'users', column: { name: 'a', type } }), type).not.to.throw();
    }
    expect(() => addColumn({ table: 'users', column: { name: 'a', type: 'text, b int' } })).to.throw(/one PostgreSQL type name.*but/);
    expect(() => addColumn({ table: 'users', column: { name: 'a', type: 'text) (' } })).to.throw(/parser refuses it/);
  });

  it('one expression: strings and quoted names may hold anything; lists, aliases and clauses are refused', () => {
    expect(() => addCheck({ table: 'users', name: 'c', check: `name <> ';' AND "we""ird; drop" IS NOT NULL` })).not.to.throw();
    expect(() => deriveColumn({ table: 'users', column: { name: 'b', type: 'text' }, from: ['created_at'], up: `EXTRACT(YEAR FROM created_at)::text` })).not.to.throw();
    expect(() => addCheck({ table: 'users', name: 'c', check: 'a > 0, b > 0' })).to.throw(/one SQL expression, but it is 2 expressions/);
    expect(() => addCheck({ table: 'users', name: 'c', check: 'a > 0 FROM users' })).to.throw(/one SQL expression, but it goes on past one expression \(fromClause\)/);
    expect(() => addCheck({ table: 'users', name: 'c', check: 'a AS b' })).to.throw(/names its result/);
    expect(() => addCheck({ table: 'users', name: 'c', check: 'a > 0; DROP TABLE users' })).to.throw(/not several statements/);
  });
});
