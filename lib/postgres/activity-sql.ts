import type { Db } from '../db/db.js';

/**
 * Client sessions of this database other than ours that are doing something now or did within the last second: the
 * application's traffic, as far as the server can tell. An idle pooled connection is not traffic; one idle in a
 * transaction is (it may hold locks). Clients of other databases on the same server are not counted: they share its
 * CPUs but never our row locks, and a server shared by unrelated databases would otherwise never look quiet.
 * A session that has run nothing yet (idle, or still starting: state NULL) is not traffic either: it is a connection
 * being opened (our own canary's, a moment before its application_name is set, or the pool's next one, a moment
 * before its pid is known as ours, were taken for the application in one run in three and paced an idle server at
 * a tenth of the time for 5 s).
 * $1 = the server pids of our own connections (int[]).
 */
export const otherClientsSql = `SELECT count(*)::int AS n FROM pg_stat_activity
   WHERE backend_type = 'client backend' AND datname = current_database() AND pid <> pg_backend_pid() AND NOT (pid = ANY($1::int[]))
     AND coalesce(application_name, '') NOT LIKE 'umzug-zero-downtime%'
     AND (state IS DISTINCT FROM 'idle' OR state_change > clock_timestamp() - interval '1 second')
     AND NOT (coalesce(state, 'starting') IN ('idle', 'starting') AND query = '')`;

/** How many other clients use the database now (otherClientsSql, with the Db's own connections left out). */
export async function otherClients(db: Db): Promise<number> {
  return (await db.query<{ n: number }>(otherClientsSql, [[...db.ownPids]])).rows[0]?.n ?? 0;
}

/**
 * Whether no other client uses the database now, so a read that has the server to itself may use its second core.
 * False when that cannot be seen (no view of pg_stat_activity, an embedded database).
 */
export async function noOtherClients(db: Db): Promise<boolean> {
  if (db.isEmbedded) return false;
  return (await otherClients(db).catch(() => 1)) === 0;
}

/**
 * Reads the heap pages [0, pages) in ranges of `step` pages, `read(from, to)` one statement each, taken in order by
 * one reader, or by two when there is more than one range and no other client uses the database (the second core's
 * share). With `openEnd` the last range has no end (`to` null: rows landing past `pages` meanwhile are read too) and
 * there is always at least that one.
 */
export async function readPageRanges(
  db: Db,
  pages: number,
  step: number,
  openEnd: boolean,
  read: (from: number, to: number | null) => Promise<void>,
): Promise<void> {
  let next = 0;
  let ended = !openEnd && pages <= 0;
  const reader = async (): Promise<void> => {
    while (!ended) {
      const from = next;
      next += step;
      const last = from + step >= pages;
      if (last) ended = true;
      await read(from, last && openEnd ? null : Math.min(pages, from + step));
    }
  };
  await Promise.all(Array.from({ length: pages > step && (await noOtherClients(db)) ? 2 : 1 }, reader));
}
