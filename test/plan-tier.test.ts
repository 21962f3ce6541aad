// The plan tier: every change type's describe() on a stored catalog (test/fixtures/plan-catalog.json), no database.
// It pins, per phase, the step ids (persisted in the steps table and used to resume), whether each step is one
// transaction, the exact statements, the lock each statement takes where that is known from its text, and the
// backfill / verify / preflight shapes. After an intended change of a plan: UPDATE_PLANS=1 npx mocha test/plan-tier.test.ts,
// then review the diff of test/fixtures/plans.json.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import {
  addCheck, addColumn, addForeignKey, addIndex, addUnique, changeColumnType, createTable, deriveColumn, dropColumn, dropIndex, dropTable,
  mergeTables, renameColumn, renameTable, setNotNull, splitTable, sql, type Change,
} from '../lib/index.js';
import type { ChangeDescription, PhasePlan } from '../lib/migration.js';
import type { CatalogSnapshot } from '../lib/postgres/catalog.js';
import { loadSqlParser, requestedLocksSync } from '../lib/postgres/statement-locks.js';
import { CHANGE_CONSTRUCTORS } from '../lib/changes/registry.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const catalog = JSON.parse(readFileSync(path.join(here, 'fixtures/plan-catalog.json'), 'utf8')) as CatalogSnapshot;
const PLANS = path.join(here, 'fixtures/plans.json');
const ctx = { defaultSchema: 'public', stateSchema: 'zero_downtime' };

const CASES: Record<string, Change> = {
  'addColumn not null with default': addColumn({ table: 'users', column: { name: 'nickname', type: 'text', nullable: false, default: 'none' } }),
  'addColumn backfilled': addColumn({ table: 'users', column: { name: 'email_lower', type: 'text' }, backfill: 'lower(email)' }),
  'renameColumn with comment and index': renameColumn({ table: 'users', from: 'email', to: 'login' }),
  'changeColumnType widening, referenced key': changeColumnType({ table: 'orders', column: 'id', type: 'bigint' }),
  'changeColumnType lossy with up/down': changeColumnType({ table: 'orders', column: 'total_cents', type: 'numeric(12,2)', up: 'total_cents / 100.0', down: 'round(total_cents * 100)::integer' }),
  'deriveColumn two-way, dropping sources': deriveColumn({ table: 'users', column: { name: 'display', type: 'text' }, from: ['first_name', 'last_name'], up: `first_name || ' ' || last_name`, down: { first_name: `split_part(display, ' ', 1)`, last_name: `split_part(display, ' ', 2)` }, dropSources: true }),
  'setNotNull with default': setNotNull({ table: 'users', column: 'full_name', default: '' }),
  'dropColumn': dropColumn({ table: 'users', column: 'legacy' }),
  'addIndex partial unique': addIndex({ table: 'orders', columns: ['user_id', 'id'], unique: true, where: 'note IS NULL' }),
  'dropIndex': dropIndex({ table: 'orders', name: 'orders_user_idx' }),
  'addForeignKey': addForeignKey({ table: 'orders', columns: ['user_id'], references: { table: 'users', columns: ['id'] }, onDelete: 'CASCADE' }),
  'addCheck': addCheck({ table: 'orders', name: 'orders_total_positive', check: 'total_cents > 0' }),
  'addUnique': addUnique({ table: 'users', columns: ['email'] }),
  'renameTable': renameTable({ from: 'audit_log', to: 'audit_events' }),
  'createTable': createTable({ table: 'sessions', columns: [{ name: 'id', type: 'uuid' }, { name: 'user_id', type: 'bigint', nullable: false }], primaryKey: ['id'] }),
  'dropTable': dropTable({ table: 'audit_log' }),
  'splitTable': splitTable({ from: 'users', to: 'user_bios', columns: ['first_name', 'last_name'], key: ['id'] }),
  'mergeTables': mergeTables({ from: ['users', 'profiles'], into: 'accounts', key: ['id'] }),
  'sql': sql({ up: 'CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_note_idx ON orders (note)', down: 'DROP INDEX CONCURRENTLY IF EXISTS orders_note_idx', transactional: false }),
  'renameColumn on a hostile table': renameColumn({ table: 'weird; drop table x', from: 'va lue', to: 'value' }),
};

interface PlannedPhaseShape {
  readonly steps: { readonly id: string; readonly transactional: boolean; readonly statements: readonly { readonly sql: string; readonly lock?: string }[] }[];
  readonly backfill?: unknown;
  readonly afterBackfill?: readonly string[];
  readonly verify?: unknown;
  readonly preflight?: unknown;
  readonly tasks?: readonly string[];
}

function shape(p: PhasePlan): PlannedPhaseShape {
  const steps = (xs: PhasePlan['steps']) =>
    xs.map((s) => ({
      id: s.id,
      transactional: s.transactional,
      statements: s.statements.map((st) => {
        // The table locks the statement requests, by PostgreSQL's grammar and documented lock levels.
        const locks = requestedLocksSync(st.text).map((l) => `${l.mode} ${l.relation}`);
        return { sql: st.text.replace(/\s+/g, ' ').trim(), ...(st.values ? { values: st.values } : {}), ...(locks.length > 0 ? { locks } : {}) };
      }),
    }));
  return {
    steps: [...steps(p.steps), ...steps(p.afterBackfill ?? [])],
    ...(p.backfill ? { backfill: JSON.parse(JSON.stringify(p.backfill)) as unknown } : {}),
    ...(p.afterBackfill ? { afterBackfill: p.afterBackfill.map((s) => s.id) } : {}),
    ...(p.verify ? { verify: JSON.parse(JSON.stringify(p.verify)) as unknown } : {}),
    ...(p.preflight ? { preflight: JSON.parse(JSON.stringify(p.preflight)) as unknown } : {}),
    ...(p.tasks ? { tasks: p.tasks.map((t) => t.id) } : {}),
  };
}

const PHASES = ['expand', 'contract', 'undoExpand', 'undoContract'] as const;

function planOf(change: Change): Record<string, PlannedPhaseShape> {
  const d: ChangeDescription = change.describe(catalog, ctx);
  return Object.fromEntries(PHASES.map((ph) => [ph, shape(d[ph])]));
}

describe('plan tier: every change described on a stored catalog (no database)', () => {
  before(() => loadSqlParser());
  const current = Object.fromEntries(Object.entries(CASES).map(([name, ch]) => [name, planOf(ch)]));
  if (process.env.UPDATE_PLANS === '1' || !existsSync(PLANS)) writeFileSync(PLANS, JSON.stringify(current, null, 1) + '\n');
  const stored = JSON.parse(readFileSync(PLANS, 'utf8')) as Record<string, Record<string, PlannedPhaseShape>>;

  it('covers every change type but the MongoDB move (its plan is tasks, tested against FerretDB)', () => {
    const kinds = new Set(Object.values(CASES).map((c) => c.kind));
    const missing = Object.keys(CHANGE_CONSTRUCTORS).filter((k) => !kinds.has(k) && k !== 'mongoToPostgres');
    expect(missing).to.deep.equal([]);
  });

  for (const name of Object.keys(CASES)) {
    it(`${name}: step ids stay as persisted, statements and shapes as stored`, () => {
      const was = stored[name];
      expect(was, `no stored plan for "${name}": run with UPDATE_PLANS=1 and review`).to.not.equal(undefined);
      for (const ph of PHASES) {
        // Step ids are recorded in zero_downtime.steps and decide what a resumed run skips: a renamed id would run a
        // finished step again (or skip one) on every database that is part-way through this change.
        expect(current[name]![ph]!.steps.map((s) => s.id), `${name} ${ph}: step ids changed — they are persisted; keep the old ids`).to.deep.equal(
          was![ph]!.steps.map((s) => s.id),
        );
      }
      expect(current[name]).to.deep.equal(was);
    });
  }

  it('describes each change in well under a second (the whole tier runs in seconds)', () => {
    const t0 = performance.now();
    for (const ch of Object.values(CASES)) planOf(ch);
    expect(performance.now() - t0).to.be.lessThan(1000);
  });
});
