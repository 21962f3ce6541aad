import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Knex } from 'knex';
import { freshDatabase, knexFor } from './support/pg.js';
import { renameProject } from './support/project.js';
import { spawnBin as bin } from './cli-support.js';

const ROWS = 20_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Every DDL command that commits, by tag and object, recorded by an event trigger in the same transaction: a step run
 * twice (by two migrators at once) shows as a second row, one that was rolled back does not show at all.
 */
const AUDIT = `
CREATE TABLE public.ddl_audit (id serial PRIMARY KEY, tag text NOT NULL, obj text);
CREATE FUNCTION public.audit_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    IF r.schema_name IS DISTINCT FROM 'zero_downtime' AND r.object_identity NOT LIKE '%ddl_audit%' THEN
      INSERT INTO public.ddl_audit (tag, obj) VALUES (r.command_tag, r.object_identity);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER zdt_audit_ddl ON ddl_command_end EXECUTE FUNCTION public.audit_ddl();`;

// The backfill holds (its health check, asked once a second, says no) while the file named by ZDT_HOLD exists: the test keeps run A
// mid-backfill, holding the lock, for as long as it needs, whatever the machine's speed.
// ROWS and the pause leave run A rows to do in the second before it looks (at most 12k rows a second here).
const CONFIG = `import { existsSync } from 'node:fs';
export default { knex: { client: 'pg', connection: process.env.DATABASE_URL, pool: { min: 0, max: 6 } }, contract: { after: '1h' },
  backfill: { batchSize: 300, adaptive: false, pause: '20ms', chunkRows: 3000, canary: false,
    healthCheck: async () => !(process.env.ZDT_HOLD && existsSync(process.env.ZDT_HOLD)) } };
`;

async function setUp(name: string): Promise<{ url: string; knex: Knex }> {
  const url = await freshDatabase(name);
  const knex = knexFor(url);
  await knex.raw(`CREATE TABLE items (id int PRIMARY KEY, title text)`);
  await knex.raw(`INSERT INTO items SELECT g, 't' || g FROM generate_series(1, ${ROWS}) g`);
  await knex.raw(AUDIT);
  return { url, knex };
}

const ddl = async (knex: Knex) =>
  ((await knex.raw(`SELECT tag, obj FROM ddl_audit ORDER BY tag, obj`)) as { rows: { tag: string; obj: string }[] }).rows.map((r) => `${r.tag} ${r.obj}`);

/** The URL a run's sessions carry their name on, so a test can end exactly that run's sessions. */
const named = (url: string, app: string) => `${url}?application_name=${app}`;

describe('the migration lock is a fence: a run that lost it commits nothing more', function () {
  this.timeout(240_000);
  let dir: string;
  let reference: string[];
  const knexes: Knex[] = [];
  before(async () => {
    dir = renameProject('lock-fence', { file: '001.items-name.ts', table: 'items', from: 'title', to: 'name' }, CONFIG).dir;
    // The DDL one uninterrupted run commits: the measure of "every step exactly once".
    const { url, knex } = await setUp('lock_fence_ref');
    knexes.push(knex);
    const run = bin(dir, url, ['up']);
    expect(await run.exited, run.output()).to.equal(0);
    reference = await ddl(knex);
    expect(reference.length, `the rename commits DDL the audit sees: ${reference.join('; ')}`).to.be.greaterThan(2);
  });
  after(() => Promise.all(knexes.map((k) => k.destroy())));

  const backfillDone = async (knex: Knex) =>
    Number(((await knex.raw(`SELECT rows_done FROM zero_downtime.backfills`).catch(() => ({ rows: [] }))) as { rows: { rows_done: string }[] }).rows[0]?.rows_done ?? 0);

  const scenario = async (name: string, kill: (knex: Knex) => Promise<number>, checkStatus = false) => {
    const { url, knex } = await setUp(name);
    knexes.push(knex);
    const hold = path.join(mkdtempSync(path.join(os.tmpdir(), 'zdt-hold-')), 'hold');
    const a = bin(dir, named(url, 'zdt-run-a'), ['up'], { ZDT_HOLD: hold });
    for (let i = 0; i < 600 && (await backfillDone(knex)) < 3000; i++) await sleep(25);
    writeFileSync(hold, '');
    expect(await backfillDone(knex), 'run A is mid-backfill').to.be.within(1, ROWS - 1);
    // A second deploy job starts and waits for the lock.
    const b = bin(dir, named(url, 'zdt-run-b'), ['up']);
    for (let i = 0; i < 200; i++) {
      const w = await knex.raw(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'zdt-run-b' AND datname = current_database()`);
      if (w.rows[0].n > 0) break;
      await sleep(25);
    }
    await sleep(300);
    const holder = (await knex.raw(`SELECT holder FROM zero_downtime.leases WHERE name = 'migrate'`)).rows[0]?.holder as string;
    expect(holder, 'run A holds the lock').to.match(/pid \d+/);
    expect(holder).to.include(`pid ${a.child.pid}`);
    if (checkStatus) {
      const st = bin(dir, url, ['status', '--json']);
      expect(await st.exited, st.output()).to.equal(0);
      const report = JSON.parse(st.stdout()) as { migrationLock: { holder: string; alive: boolean } | null };
      expect(report.migrationLock, '`status` names the run holding the lock').to.deep.include({ holder, alive: true });
    }
    const killed = await kill(knex);
    expect(killed, 'sessions ended').to.be.greaterThan(0);
    rmSync(hold);

    const codeA = await a.exited;
    expect(codeA, a.output()).to.not.equal(0);
    expect(a.output()).to.match(/lost the migration lock \(/);
    expect(await b.exited, b.output()).to.equal(0);

    // Every step exactly once: the same DDL as the uninterrupted run, nothing twice.
    expect(await ddl(knex)).to.deep.equal(reference);
    // Every batch exactly once: the progress counts each row once, and every row was written.
    const bf = (await knex.raw(`SELECT rows_done::int AS n, done FROM zero_downtime.backfills`)).rows[0];
    expect(bf).to.deep.equal({ n: ROWS, done: true });
    const chunks = (await knex.raw(`SELECT sum(rows_done)::int AS n FROM zero_downtime.backfill_chunks`)).rows[0];
    expect(chunks.n).to.equal(ROWS);
    const wrong = (await knex.raw(`SELECT count(*)::int AS n FROM items WHERE name IS DISTINCT FROM title`)).rows[0];
    expect(wrong.n).to.equal(0);
    const logged = (await knex.raw(`SELECT name FROM zero_downtime.migrations`)).rows.map((r: { name: string }) => r.name);
    expect(logged).to.deep.equal(['001.items-name.ts:expand']);
    const lease = (await knex.raw(`SELECT count(*)::int AS n FROM zero_downtime.leases WHERE name = 'migrate'`)).rows[0];
    expect(lease.n, 'the lock is released at the end').to.equal(0);
  };

  it('the lock session terminated mid-backfill with a second `up` waiting: A stops with "lost the migration lock", B finishes, everything ran once', async () => {
    await scenario('lock_fence_session', async (knex) => {
      const pid = (await knex.raw(`SELECT session_pid FROM zero_downtime.leases WHERE name = 'migrate'`)).rows[0]?.session_pid as number;
      expect(pid).to.be.a('number');
      const r = await knex.raw(`SELECT pg_terminate_backend(?) AS ok`, [pid]);
      return r.rows[0].ok ? 1 : 0;
    }, true);
  });

  it('every session of the running `up` terminated at once: the same', async () => {
    await scenario('lock_fence_all', async (knex) => {
      const r = await knex.raw(`SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'zdt-run-a' AND datname = current_database()) t`);
      return r.rows[0].n as number;
    });
  });
});
