/**
 * The main job on an embedded PostgreSQL (PGlite, in this process; no server needed): rename a column of a seeded
 * table while simulated old-version writers (writing `name`) and new-version writers (writing `full_name`) keep
 * inserting, updating and deleting, through expand → backfill → verify → contract → down → down → up.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import { zeroDowntime } from '../lib/index.js';

const ROWS = Number(process.env.DEMO_ROWS ?? 20_000);
const here = path.dirname(fileURLToPath(import.meta.url));

interface Writer {
  label: string;
  ops: number;
  errors: string[];
  running: boolean;
  done?: Promise<void>;
}

function startWriter(knex: Knex, label: string, column: 'name' | 'full_name'): Writer {
  const w: Writer = { label, ops: 0, errors: [], running: true };
  w.done = (async () => {
    let i = 0;
    while (w.running) {
      i++;
      const id = 1 + Math.floor(Math.random() * ROWS);
      try {
        const r = Math.random();
        if (r < 0.4) await knex.raw(`INSERT INTO users (${column}) VALUES (?)`, [`${label} #${i}`]);
        else if (r < 0.9) await knex.raw(`UPDATE users SET ${column} = ? WHERE id = ?`, [`${label} #${i}`, id]);
        else await knex.raw(`DELETE FROM users WHERE id = ?`, [id]);
        w.ops++;
      } catch (e) {
        w.errors.push((e as Error).message);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return w;
}

const stop = async (ws: Writer[]) => {
  for (const w of ws) w.running = false;
  await Promise.all(ws.map((w) => w.done));
};

async function disagreeing(knex: Knex): Promise<number> {
  const r = await knex.raw<{ rows: { n: number }[] }>(`SELECT count(*)::int AS n FROM users WHERE full_name IS DISTINCT FROM name`);
  return r.rows[0]!.n;
}

async function main(): Promise<void> {
  const knex = knexFactory({ client: ClientPgLite, dialect: 'postgres', connection: {} });
  const t0 = Date.now();
  const say = (msg: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);

  await knex.raw(`CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'anonymous', email text)`);
  await knex.raw(`INSERT INTO users (name, email) SELECT 'User ' || g, 'user' || g || '@example.com' FROM generate_series(1, ${ROWS}) g`);
  say(`seeded ${ROWS} users on embedded PostgreSQL (PGlite)`);

  const umzug = zeroDowntime({
    knex,
    cwd: here,
    migrations: 'migrations/*.ts',
    contract: { after: 0 },
    // A short pause between batches leaves the single embedded connection to the writers now and then.
    backfill: { batchSize: 1000, pause: 15 },
    logger: null,
  });
  let lastReported = 0;
  umzug.engine.subscribe((e) => {
    if (e.type === 'step' && e.status === 'done') say(`${e.phase}: ${e.step}`);
    if (e.type === 'backfill' && (e.progress.done || e.progress.rowsDone - lastReported >= 5000)) {
      lastReported = e.progress.rowsDone;
      say(`${e.progress.phase} backfill: ${e.progress.rowsDone} rows scanned, ${e.progress.rowsUpdated} written, ${e.progress.batches} batches${e.progress.done ? ' — done' : ''}`);
    }
    if (e.type === 'verify') say(`${e.phase} verify: ${e.result.rowsChecked} rows checked, ${e.result.mismatches} mismatches`);
  });

  const oldWriters = [startWriter(knex, 'old-app-1', 'name'), startWriter(knex, 'old-app-2', 'name')];
  say('old application version writing `name` (2 writers)');
  let newWriters: Writer[] = [];
  const unsubscribe = umzug.engine.subscribe((e) => {
    if (e.type === 'step' && e.phase === 'expand' && newWriters.length === 0) {
      newWriters = [startWriter(knex, 'new-app-1', 'full_name'), startWriter(knex, 'new-app-2', 'full_name')];
      say('new application version deployed beside it, writing `full_name` (2 writers)');
    }
  });

  say('npx umzug up   (deploy 1: expand, backfill, verify)');
  await umzug.up();
  unsubscribe();
  for (const g of umzug.lastGated) say(`contract waits for the next deploy: ${g.gate.reasons.join('; ') || 'gate opens next run'}`);
  say(`rows where name and full_name disagree: ${await disagreeing(knex)}`);

  await stop(oldWriters);
  say('old application version retired');
  say('npx umzug up   (deploy 2: contract)');
  await umzug.up();
  const cols = await knex.raw<{ rows: { c: string }[] }>(`SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) AS c FROM information_schema.columns WHERE table_name = 'users'`);
  say(`users columns now: ${cols.rows[0]!.c}`);

  say('npx umzug down (undo contract: name restored from full_name, sync re-installed)');
  await umzug.down();
  const oldAgain = [startWriter(knex, 'old-app-3', 'name')];
  await new Promise((r) => setTimeout(r, 300));
  say(`rows where name and full_name disagree: ${await disagreeing(knex)}`);
  await stop([...newWriters, ...oldAgain]);
  say('npx umzug down (undo expand: full_name and the trigger dropped)');
  await umzug.down();
  say('npx umzug up   (expand again)');
  await umzug.up();
  say(`rows where name and full_name disagree: ${await disagreeing(knex)}`);

  const all = [...oldWriters, ...newWriters, ...oldAgain];
  const errors = all.flatMap((w) => w.errors);
  console.log('\nWriters:');
  for (const w of all) console.log(`  ${w.label.padEnd(10)} ${String(w.ops).padStart(6)} writes, ${w.errors.length} errors`);
  const status = await umzug.status();
  console.log(`\nStatus: ${status.migrations.map((m) => `${m.file}: expand ${m.expand}, contract ${m.contract}`).join('\n')}`);
  console.log(errors.length === 0 ? '\nNo writer saw an error; old and new columns agreed at every check.' : `\n${errors.length} writer errors, first: ${errors[0]}`);
  await knex.destroy();
  if (errors.length > 0) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
