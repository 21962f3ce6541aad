/**
 * Emergency rollback vs the way forward (issue 13 item 5), measured side by side in one run:
 *
 *   npx tsx bench/undo-restore.ts --rows 200k [--load] [--canary on|off] [--change rename|type]
 *
 * Two identical tables, each with the same migration (its own project): `rename` renames a text column (its undo
 * refills from the live column, as exact as the way forward), `type` changes a text column of digits to integer
 * (lossy back: '007' → 7 → '7', so its undo joins each batch to the archive). Order: forward(t1), contract(t1),
 * forward(t2), contract(t2), undo(t2), undo(t1): each kind is timed once right after the other kind, so neither
 * gains from going first. "forward" is the expand's backfill (the new column from the old), "undo" the undo of the
 * contract's backfill (the old column refilled from the archive); both through the real engine, with the sync
 * triggers, the canary and the pacer as configured. It also times, on a third table, one batch range of the restore
 * UPDATE in its old form (a correlated archive subquery per mention per row) and its new form (the archive joined).
 * --load runs pgbench (2 clients, rate-limited, on pgbench tables in the same database) throughout.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { zeroDowntime } from '../lib/index.js';
import { keysetRangeJoinUpdateSqls, keysetRangeUpdateSql } from '../lib/postgres/batch-sql.js';
import { benchArg, client, dropBenchDatabase, fmt, freshBenchDatabase, parseSize, startPgbenchLoad } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const LIB_INDEX = path.resolve(here, '../lib/index.ts');
const arg = benchArg;
const ROWS = parseSize(arg('rows') ?? '200k');
const LOAD = process.argv.includes('--load');
const CANARY = (arg('canary') ?? 'on') === 'on';
const CHANGE = arg('change') ?? 'rename';
if (CHANGE !== 'rename' && CHANGE !== 'type') throw new Error(`--change must be rename or type, not ${CHANGE}`);

function project(table: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `zd-bench-undo-${table}-`));
  mkdirSync(path.join(dir, 'migrations'));
  writeFileSync(
    path.join(dir, 'migrations', `001.rename-${table}.ts`),
    CHANGE === 'rename'
      ? `import { defineMigration, renameColumn } from ${JSON.stringify(LIB_INDEX)};\nexport default defineMigration({ changes: [renameColumn({ table: '${table}', from: 'title', to: 'name' })] });\n`
      : `import { defineMigration, changeColumnType } from ${JSON.stringify(LIB_INDEX)};\nexport default defineMigration({ changes: [changeColumnType({ table: '${table}', column: 'code', type: 'integer' })] });\n`,
  );
  return dir;
}

async function main(): Promise<void> {
  const dbName = `zd_bench_undo_${process.pid}`;
  const url = await freshBenchDatabase(dbName);
  const setup = await client(url);
  for (const t of ['t1', 't2', 't3']) {
    await setup.query(`CREATE TABLE ${t} (id bigint PRIMARY KEY, title text, b int, code text, pad text)`);
    await setup.query(`INSERT INTO ${t} SELECT g, 'title-' || g, g % 1000, lpad((g % 100000)::text, 6, '0'), repeat('x', 40) FROM generate_series(1, ${ROWS}) g`);
    await setup.query(`VACUUM ANALYZE ${t}`);
  }
  const load = LOAD ? await startPgbenchLoad(dbName) : null;
  const knex = knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 8 } });
  const umzugs = Object.fromEntries(
    ['t1', 't2'].map((t) => [
      t,
      zeroDowntime({ knex, cwd: project(t), contract: { after: 0 }, logger: { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} }, backfill: CANARY ? {} : { canary: false } }),
    ]),
  );
  // Why a backfill took what it took: the throttle's holds and pace, the monitor's pauses, the batches.
  const why = new Map<string, { holds: number; heldMs: number; paces: number[]; monitorPausedMs: number; batches: number; breaches: string[] }>();
  const whyOf = (phase: string) => {
    let w = why.get(phase);
    if (!w) why.set(phase, (w = { holds: 0, heldMs: 0, paces: [], monitorPausedMs: 0, batches: 0, breaches: [] }));
    return w;
  };
  let currentPhase = '';
  for (const u of Object.values(umzugs)) {
    u.engine.subscribe((e) => {
      if (e.type === 'backfill') {
        currentPhase = e.progress.phase;
        whyOf(e.progress.phase).batches = e.progress.batches;
      }
      if (e.type === 'backfill-throttle') {
        const w = whyOf(e.phase);
        if (e.throttle.state === 'paused') w.holds++;
        if (e.throttle.state === 'resumed') w.heldMs += e.throttle.pausedMs ?? 0;
        if (e.throttle.state === 'paced') w.paces.push(Number((e.throttle.busyFraction ?? 0).toFixed(3)));
      }
    });
    u.monitor.on((e) => {
      if (e.type === 'resumed') whyOf(currentPhase).monitorPausedMs += e.pausedMs;
      if (e.type === 'breach') whyOf(currentPhase).breaches.push(e.breach.threshold);
    });
  }
  const times: Record<'forward' | 'undo', number[]> = { forward: [], undo: [] };
  // Canary off as `--canary off` has it: the backfill's pacer and the monitor's threshold both.
  if (!CANARY) for (const u of Object.values(umzugs)) u.monitor.suspendCanary();
  const timed = async (kind: 'forward' | 'undo', t: string, f: () => Promise<unknown>) => {
    const started = performance.now();
    await f();
    const ms = performance.now() - started;
    times[kind].push(ms);
    console.log(`${kind} ${t}: ${fmt(ms / 1000)} s (${Math.round(ROWS / (ms / 1000))} rows/s)`);
  };
  // up #1 = expand (its backfill), up #2 = contract (archive fill), down #1 = undo of the contract (the restore).
  await timed('forward', 't1', () => umzugs.t1!.up());
  await umzugs.t1!.up();
  await timed('forward', 't2', () => umzugs.t2!.up());
  await umzugs.t2!.up();
  await timed('undo', 't2', () => umzugs.t2!.down());
  await timed('undo', 't1', () => umzugs.t1!.down());

  // One batch range of the restore UPDATE joined to the archive vs the forward backfill's UPDATE (the new value from
  // the row itself), over the same 20 000-key ranges of t3 (archive made here, untimed): what a row of a lossy undo
  // costs beyond a row of the way forward.
  const c = await client(url);
  await c.query(`CREATE TABLE arch3 (_zd_k0 bigint PRIMARY KEY, _zd_v0 text)`);
  await c.query(`INSERT INTO arch3 SELECT id, title FROM t3`);
  await c.query(`ALTER TABLE t3 ADD COLUMN r text`);
  await c.query(`VACUUM ANALYZE arch3`);
  const table = { schema: 'public', name: 't3' };
  const keys = [{ name: 'id', type: 'bigint' }];
  const cond = `title IS NOT DISTINCT FROM _zd_a._zd_v0`;
  const plainSql = keysetRangeUpdateSql(table, keys, [{ column: 'r', expression: 'title' }], 'distinct', true, true);
  const joinSqls = keysetRangeJoinUpdateSqls(table, keys, [{ column: 'r', expression: `CASE WHEN (_zd_a._zd_k0 IS NOT NULL AND (${cond})) THEN _zd_a._zd_v0 ELSE title END` }], 'distinct', { table: { schema: 'public', name: 'arch3' }, on: [{ column: 'id', joined: '_zd_k0' }] }, true, true);
  const span = 20_000;
  const per: Record<'join' | 'plain', number> = { join: 0, plain: 0 };
  for (let lo = 0, i = 0; lo + span <= Math.min(ROWS, 200_000); lo += span, i++) {
    for (const kind of i % 2 === 0 ? (['join', 'plain'] as const) : (['plain', 'join'] as const)) {
      // Each form writes its own half of the range, so neither finds the other's work done.
      const half = kind === 'join' ? [lo, lo + span / 2] : [lo + span / 2, lo + span];
      const s = performance.now();
      for (const sql of kind === 'join' ? joinSqls : [plainSql]) await c.query(sql, [String(half[0]), String(half[1])]);
      per[kind] += performance.now() - s;
    }
  }
  await c.end();
  for (const [phase, w] of why) {
    console.log(`${phase}: ${w.batches} batches, throttle held ${w.holds}× for ${fmt(w.heldMs / 1000)} s, monitor paused ${fmt(w.monitorPausedMs / 1000)} s, breaches [${w.breaches.join(', ')}], pace ${w.paces.slice(0, 12).join(' → ')}${w.paces.length > 12 ? ' …' : ''}`);
  }

  const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
  console.log(
    `${CHANGE}, rows ${ROWS}, load ${LOAD ? 'pgbench -c 2 -R 300' : 'none'}, canary ${CANARY ? 'on' : 'off'}: forward ${times.forward.map((x) => fmt(x / 1000)).join(' / ')} s, undo ${times.undo.map((x) => fmt(x / 1000)).join(' / ')} s, ` +
      `undo ÷ forward ${fmt(mean(times.undo) / mean(times.forward))}; archive-joined restore UPDATE ÷ forward UPDATE (same ranges) ${fmt(per.join / per.plain)} (${fmt(per.join)} ms vs ${fmt(per.plain)} ms)`,
  );
  load?.kill('SIGTERM');
  await Promise.all(Object.values(umzugs).map((u) => u.close()));
  await knex.destroy();
  await setup.end();
  await dropBenchDatabase(dbName);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
