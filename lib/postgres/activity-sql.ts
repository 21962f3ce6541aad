/**
 * Client sessions of this database other than ours that are doing something now or did within the last second: the
 * application's traffic, as far as the server can tell. An idle pooled connection is not traffic; one idle in a
 * transaction is (it may hold locks). Clients of other databases on the same server are not counted: they share its
 * CPUs but never our row locks, and a server shared by unrelated databases would otherwise never look quiet.
 * $1 = the server pids of our own connections (int[]).
 */
export const otherClientsSql = `SELECT count(*)::int AS n FROM pg_stat_activity
   WHERE backend_type = 'client backend' AND datname = current_database() AND pid <> pg_backend_pid() AND NOT (pid = ANY($1::int[]))
     AND coalesce(application_name, '') NOT LIKE 'umzug-zero-downtime%'
     AND (state IS DISTINCT FROM 'idle' OR state_change > clock_timestamp() - interval '1 second')`;
