import { expect } from 'chai';
import type { Knex } from 'knex';
import { Db, zeroDowntime } from '../lib/index.js';
import type { EngineEvent } from '../lib/runner.js';
import { openTestDatabase, silentLogger } from './support/pg.js';
import { startLoop, type LoopWriter } from './support/column-writers.js';
import { tempProject } from './support/project.js';
import { expectSameState, takeState } from './support/db-state.js';

const ROWS = 6_000;

/** The error a command failed with, or null; Umzug wraps a migration's error, so its message holds the original. */
async function failure(p: Promise<unknown>): Promise<string | null> {
  return p.then(
    () => null,
    (e: Error) => {
      const parts: string[] = [];
      for (let x: unknown = e; x instanceof Error; x = x.cause) parts.push(x.message);
      return parts.join(' | ');
    },
  );
}

describe('a failed expand never breaks the application, and is always undoable', function () {
  let url: string;
  let knex: Knex;
  let db: Db;
  before(async () => {
    ({ url, knex, db } = await openTestDatabase('expand_failure'));
  });
  after(() => knex?.destroy());

  const q = async <R>(sql: string, values: unknown[] = []) => (await knex.raw<{ rows: R[] }>(sql, values as Knex.RawBinding[])).rows;
  const state = () => takeState(db, ['public']);
  const changesOf = async (file: string) => (await q<{ n: number }>(`SELECT count(*)::int AS n FROM zero_downtime.changes WHERE migration = ?`, [`${file}:expand`]))[0]!.n;

  function project(name: string, file: string, change: string): string {
    const p = tempProject(name);
    p.write(
      file,
      `import { defineMigration, changeColumnType, deriveColumn, setNotNull, addColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [${change}] });
`,
    );
    return p.dir;
  }

  it('preflight: each change whose expression fails on existing rows is refused before anything is installed, naming the rows and the fix', async () => {
    await knex.raw(`CREATE TABLE items (id bigserial PRIMARY KEY, code text, a int NOT NULL DEFAULT 1, b int NOT NULL DEFAULT 1, note text)`);
    await knex.raw(`INSERT INTO items (code, a, b) SELECT g::text, g, 1 + g % 7 FROM generate_series(1, ${ROWS}) g`);
    await knex.raw(`UPDATE items SET code = 'abc' WHERE id IN (17, 4242); UPDATE items SET b = 0 WHERE id = 99; UPDATE items SET note = NULL`);
    const cases: { file: string; change: string; expect: RegExp }[] = [
      {
        file: '2026.12.01T10.00.00.code-int.ts',
        change: `changeColumnType({ table: 'items', column: 'code', type: 'integer' })`,
        expect: /2 row\(s\) of public\.items cannot be converted.*\["17"\].*invalid input syntax.*\["4242"\].*Nothing was changed.*give changeColumnType an `up` expression/,
      },
      {
        file: '2026.12.01T10.00.01.code-int-up.ts',
        change: `changeColumnType({ table: 'items', column: 'code', type: 'integer', up: 'code::integer * 2' })`,
        expect: /2 row\(s\) of public\.items cannot be converted.*fix `up`/,
      },
      {
        file: '2026.12.01T10.00.02.ratio.ts',
        change: `deriveColumn({ table: 'items', column: { name: 'ratio', type: 'int' }, from: ['a', 'b'], up: 'a / b' })`,
        expect: /1 row\(s\) of public\.items cannot be converted.*\["99"\].*division by zero.*Nothing was changed/,
      },
      {
        file: '2026.12.01T10.00.03.note-nn.ts',
        change: `setNotNull({ table: 'items', column: 'note', defaultSql: "(100 / (b))::text" })`,
        expect: /1 row\(s\) of public\.items cannot be converted.*\["99"\].*division by zero/,
      },
      {
        file: '2026.12.01T10.00.04.add-col.ts',
        change: `addColumn({ table: 'items', column: { name: 'code_num', type: 'integer' }, backfill: 'code::integer' })`,
        expect: /2 row\(s\) of public\.items cannot be converted.*invalid input syntax/,
      },
    ];
    for (const c of cases) {
      const umzug = zeroDowntime({ knex, cwd: project('preflight', c.file, c.change), contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
      await umzug.engine.state.ensure();
      const before = await state();
      const message = await failure(umzug.up());
      expect(message, c.file).to.match(c.expect);
      expectSameState(before, await state(), `${c.file} refused`);
      expect(await changesOf(c.file), `${c.file}: no state recorded`).to.equal(0);
      expect(await umzug.executed()).to.deep.equal([]);
      await umzug.close();
    }
    // Cleaned data passes the same preflight.
    await knex.raw(`UPDATE items SET code = '0' WHERE code = 'abc'`);
    const umzug = zeroDowntime({ knex, cwd: project('preflight-ok', cases[0]!.file, cases[0]!.change), contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal([`${cases[0]!.file}:expand`]);
    await umzug.down();
    await umzug.close();
    await knex.raw('DROP TABLE items');
  });

  it('bad values written by the old version during the backfill: no write fails, the rows are recorded and reported by verify, the gate stays closed until they are fixed', async () => {
    await knex.raw(`CREATE TABLE tickets (id bigserial PRIMARY KEY, code text NOT NULL, note text)`);
    await knex.raw(`INSERT INTO tickets (code, note) SELECT g::text, 't' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE tickets');
    const file = '2026.12.01T11.00.00.ticket-code-int.ts';
    const installed = { on: false };
    const umzug = zeroDowntime({
      knex,
      cwd: project('bad-writes', file, `changeColumnType({ table: 'tickets', column: 'code', type: 'integer' })`),
      contract: { after: 0 },
      backfill: { batchSize: 200, canary: false },
      logger: silentLogger,
      onEvent: (e: EngineEvent) => {
        if (e.type === 'step' && e.status === 'done') installed.on = true;
      },
    });
    let bad = 0;
    // The old version: good inserts and updates, and, once the sync trigger is there, values that are not numbers.
    const oldApp = (label: string) =>
      startLoop(url, label, async (c, i) => {
        const target = 1 + Math.floor(Math.random() * ROWS);
        const writeBad = installed.on && i % 5 === 0;
        if (writeBad) bad++;
        if (i % 2 === 0) await c.query(`INSERT INTO tickets (code, note) VALUES ($1, $2)`, [writeBad ? `x${label}${i}` : String(i), label]);
        else await c.query(`UPDATE tickets SET code = $1 WHERE id = $2`, [writeBad ? `y${label}${i}` : String(target), target]);
      });
    // The backfill waits for some bad writes before its first batch, so they land while it runs.
    let guardCalls = 0;
    umzug.engine.addBatchGuard(async () => {
      if (guardCalls++ > 0) return;
      for (let waited = 0; bad < 10 && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    });
    const writers: LoopWriter[] = [await oldApp('old0'), await oldApp('old1')];
    let first: string | null;
    try {
      first = await failure(umzug.up());
      // Writes of bad values go on after the expand is done too: still no failure.
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
    }
    expect(writers.flatMap((w) => w.errors), 'application writes never fail').to.deep.equal([]);
    expect(bad).to.be.greaterThan(10);
    const recorded = await q<{ id: string; code: string; code__new: number | null; error: string }>(
      `SELECT t.id::text AS id, t.code, t.code__new, e.error FROM zero_downtime.conversion_errors e JOIN tickets t ON jsonb_build_array(t.id::text) = e.row_key
        WHERE e.table_name = 'tickets' AND e.target = 'code__new' ORDER BY t.id`,
    );
    const stillBad = recorded.filter((r) => /^[xy]/.test(r.code));
    expect(stillBad.length, 'bad rows recorded').to.be.greaterThan(0);
    for (const r of stillBad) {
      expect(r.code__new).to.equal(null);
      expect(r.error).to.match(/invalid input syntax for type integer/);
    }
    // Every row holding a bad value is recorded with its new column NULL, and every other row is converted.
    const counts = (await q<{ unrecorded: number; unconverted: number }>(
      `SELECT count(*) FILTER (WHERE code !~ '^[0-9]+$' AND (code__new IS NOT NULL OR NOT EXISTS (SELECT 1 FROM zero_downtime.conversion_errors e WHERE e.row_key = jsonb_build_array(tickets.id::text))))::int AS unrecorded,
              count(*) FILTER (WHERE code ~ '^[0-9]+$' AND code__new IS DISTINCT FROM code::integer)::int AS unconverted FROM tickets`,
    ))[0]!;
    expect(counts).to.deep.equal({ unrecorded: 0, unconverted: 0 });
    // The expand's verify reported them (count + sample keys) and so did not finish: no contract can follow.
    expect(first).to.match(new RegExp(`\\d+ rows of public\\.tickets were written with values the sync trigger could not convert \\(sample keys \\[\\["\\d+"\\]`));
    expect(first).to.match(/invalid input syntax for type integer/);
    expect(first).not.to.match(/undone/);
    const again = await failure(umzug.up());
    expect(again).to.match(/could not convert/);
    const entry = (await umzug.entries()).find((e) => e.phase === 'contract')!;
    const gate = await umzug.engine.gate(`${file}:expand`, entry.changes, { safetyWindowMs: 0 });
    expect(gate.open).to.equal(false);
    // Fixed rows (the application or a person) convert through the trigger; the next verify settles their records.
    await knex.raw(`UPDATE tickets SET code = '0' WHERE code !~ '^[0-9]+$'`);
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal([`${file}:expand`]);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM zero_downtime.conversion_errors`))[0]!.n).to.equal(0);
    // A bad value written after the expand finished: the write succeeds, and the gate closes again.
    await knex.raw(`INSERT INTO tickets (code) VALUES ('late')`);
    const closed = await umzug.engine.gate(`${file}:expand`, entry.changes, { safetyWindowMs: 0 });
    expect(closed.reasons.join('\n')).to.match(/1 rows could not be converted/);
    expect((await umzug.up()).map((m) => m.name), 'the contract waits').to.deep.equal([]);
    // Past the gate too (a rehearsal bypasses it), the contract refuses rather than drop the only copy of the value.
    expect(await failure(umzug.engine.contract(`${file}:expand`, entry.changes))).to.match(/cannot contract change #1 \(changeColumnType\): 1 rows of public\.tickets.*Nothing was changed/);
    await knex.raw(`UPDATE tickets SET code = '1' WHERE code = 'late'`);
    const verified = await umzug.engine.verify(`${file}:expand`, 0, entry.changes[0]!);
    expect(verified?.mismatches).to.equal(0);
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal([`${file}:contract`]);
    expect((await q<{ type: string }>(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = 'tickets'::regclass AND attname = 'code'`))[0]!.type).to.equal('integer');
    await umzug.close();
    await knex.raw('DROP TABLE tickets');
  });

  it('deriveColumn: rows the old version writes during the backfill that `up` cannot compute are recorded, never failed, and reported by verify', async () => {
    await knex.raw(`CREATE TABLE ratios (id bigserial PRIMARY KEY, a int NOT NULL, b int NOT NULL)`);
    await knex.raw(`INSERT INTO ratios (a, b) SELECT g, 1 + g % 9 FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE ratios');
    const file = '2026.12.01T11.15.00.ratio.ts';
    const installed = { on: false };
    const umzug = zeroDowntime({
      knex,
      cwd: project('derive-bad', file, `deriveColumn({ table: 'ratios', column: { name: 'ratio', type: 'int' }, from: ['a', 'b'], up: 'a / b' })`),
      contract: { after: 0 },
      backfill: { batchSize: 200, canary: false },
      logger: silentLogger,
      onEvent: (e: EngineEvent) => {
        if (e.type === 'step' && e.status === 'done') installed.on = true;
      },
    });
    let bad = 0;
    const oldApp = (label: string) =>
      startLoop(url, label, async (c, i) => {
        const target = 1 + Math.floor(Math.random() * ROWS);
        const b = installed.on && i % 5 === 0 ? 0 : 1 + (i % 9);
        if (b === 0) bad++;
        if (i % 2 === 0) await c.query(`INSERT INTO ratios (a, b) VALUES ($1, $2)`, [i, b]);
        else await c.query(`UPDATE ratios SET b = $1 WHERE id = $2`, [b, target]);
      });
    let guardCalls = 0;
    umzug.engine.addBatchGuard(async () => {
      if (guardCalls++ > 0) return;
      for (let waited = 0; bad < 10 && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    });
    const writers: LoopWriter[] = [await oldApp('old0'), await oldApp('old1')];
    let first: string | null;
    try {
      first = await failure(umzug.up());
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
    }
    expect(writers.flatMap((w) => w.errors), 'application writes never fail').to.deep.equal([]);
    expect(bad).to.be.greaterThan(10);
    const counts = (await q<{ zero: number; unrecorded: number; wrong: number }>(
      `SELECT count(*) FILTER (WHERE b = 0)::int AS zero,
              count(*) FILTER (WHERE b = 0 AND (ratio IS NOT NULL OR NOT EXISTS (SELECT 1 FROM zero_downtime.conversion_errors e WHERE e.table_name = 'ratios' AND e.row_key = jsonb_build_array(ratios.id::text))))::int AS unrecorded,
              count(*) FILTER (WHERE b <> 0 AND ratio IS DISTINCT FROM a / b)::int AS wrong FROM ratios`,
    ))[0]!;
    expect(counts.zero).to.be.greaterThan(0);
    expect({ unrecorded: counts.unrecorded, wrong: counts.wrong }).to.deep.equal({ unrecorded: 0, wrong: 0 });
    expect(first).to.match(/rows of public\.ratios were written with values the sync trigger could not convert.*division by zero/);
    expect(first).not.to.match(/undone/);
    // Fixed, the next up finishes the expand; down removes it and forgets the records.
    await knex.raw(`UPDATE ratios SET b = 1 WHERE b = 0`);
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal([`${file}:expand`]);
    await umzug.down();
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM zero_downtime.conversion_errors WHERE table_name = 'ratios'`))[0]!.n).to.equal(0);
    await umzug.close();
    await knex.raw('DROP TABLE ratios');
  });

  it("onConversionError: 'reject' keeps the strict behaviour: the trigger fails a write it cannot convert", async () => {
    await knex.raw(`CREATE TABLE strict_t (id bigserial PRIMARY KEY, code text)`);
    await knex.raw(`INSERT INTO strict_t (code) SELECT g::text FROM generate_series(1, 100) g`);
    const file = '2026.12.01T11.30.00.strict.ts';
    const umzug = zeroDowntime({
      knex,
      cwd: project('strict', file, `changeColumnType({ table: 'strict_t', column: 'code', type: 'integer', onConversionError: 'reject' })`),
      contract: { after: 0 },
      logger: silentLogger,
    });
    await umzug.up();
    const refused = await failure(knex.raw(`INSERT INTO strict_t (code) VALUES ('abc')`));
    expect(refused).to.match(/invalid input syntax for type integer/);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM zero_downtime.conversion_errors WHERE table_name = 'strict_t'`))[0]!.n).to.equal(0);
    await umzug.down();
    await umzug.close();
    await knex.raw('DROP TABLE strict_t');
  });

  it('an expand that fails on a non-retryable error is undone automatically, says so, and leaves schema and data as before', async () => {
    // '01' and '1' are distinct texts but the same integer: the unique index on the new column cannot be built.
    await knex.raw(`CREATE TABLE codes (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE, note text)`);
    await knex.raw(`INSERT INTO codes (code, note) SELECT g::text, 'c' || g FROM generate_series(1, 5000) g`);
    await knex.raw(`INSERT INTO codes (code, note) VALUES ('0042', 'dup')`);
    const file = '2026.12.01T12.00.00.codes-int.ts';
    const umzug = zeroDowntime({ knex, cwd: project('undo', file, `changeColumnType({ table: 'codes', column: 'code', type: 'integer' })`), contract: { after: 0 }, backfill: { canary: false }, logger: silentLogger });
    await umzug.engine.state.ensure();
    const before = await state();
    const message = await failure(umzug.up());
    expect(message).to.match(/expand failed and was undone automatically/);
    expect(message).to.match(/could not create unique index|duplicate key/);
    expect(message).to.match(/run `umzug up` again/);
    expectSameState(before, await state(), 'after the automatic undo');
    expect(await changesOf(file)).to.equal(0);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM zero_downtime.steps WHERE migration = ?`, [`${file}:expand`]))[0]!.n).to.equal(0);
    // Nothing is left to resume: the next up starts from scratch, and fails (and is undone) the same way.
    expect(await failure(umzug.up())).to.match(/undone automatically/);
    expectSameState(before, await state(), 'after the second automatic undo');
    await umzug.close();
    await knex.raw('DROP TABLE codes');
  });

  it('an interrupted backfill is not undone (it resumes), and `down` undoes a half-applied expand, leaving schema and data as before', async () => {
    await knex.raw(`CREATE TABLE parts (id bigserial PRIMARY KEY, qty text NOT NULL, note text)`);
    await knex.raw(`INSERT INTO parts (qty, note) SELECT g::text, 'p' || g FROM generate_series(1, ${ROWS}) g`);
    await knex.raw('ANALYZE parts');
    const file = '2026.12.01T13.00.00.parts-qty-int.ts';
    const umzug = zeroDowntime({
      knex,
      cwd: project('half', file, `changeColumnType({ table: 'parts', column: 'qty', type: 'integer' })`),
      contract: { after: 0 },
      backfill: { batchSize: 300, adaptive: false, canary: false },
      logger: silentLogger,
    });
    await umzug.engine.state.ensure();
    const before = await state();
    const interruptedUp = async () => {
      const stop = new AbortController();
      let batches = 0;
      const remove = umzug.engine.addBatchGuard(async () => {
        if (++batches === 3) stop.abort();
      });
      try {
        return await failure(umzug.engine.withSignal(stop.signal, () => umzug.up()));
      } finally {
        remove();
      }
    };
    expect(await interruptedUp()).to.match(/backfill stopped after/);
    // Not undone: the new column, its trigger and the progress are there, to resume.
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'parts' AND column_name = 'qty__new'`))[0]!.n).to.equal(1);
    expect(await umzug.executed()).to.deep.equal([]);
    expect(await changesOf(file)).to.equal(1);
    // `down` sees the half-applied expand, undoes it and reports it as reverted.
    expect((await umzug.down()).map((m) => m.name)).to.deep.equal([`${file}:expand`]);
    expectSameState(before, await state(), 'down of a half-applied expand');
    expect(await changesOf(file)).to.equal(0);
    expect((await umzug.down()).map((m) => m.name), 'nothing more to revert').to.deep.equal([]);
    // Interrupted again, then resumed to the end by the next up.
    expect(await interruptedUp()).to.match(/backfill stopped after/);
    expect((await umzug.up()).map((m) => m.name)).to.deep.equal([`${file}:expand`]);
    expect((await q<{ n: number }>(`SELECT count(*)::int AS n FROM parts WHERE qty__new IS DISTINCT FROM qty::integer`))[0]!.n).to.equal(0);
    await umzug.close();
    await knex.raw('DROP TABLE parts');
  });
});
