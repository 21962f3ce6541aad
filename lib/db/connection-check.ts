/**
 * Checks a PostgreSQL connection setting before Knex is given it. Without this, an empty or garbled URL reaches pg,
 * which falls back to defaults and answers with the server's `no PostgreSQL user name specified in startup packet`,
 * and a missing one makes Knex say only `Unable to acquire a connection`: neither names the setting at fault.
 */

/** The URL with its password replaced, so an error can show which URL was meant without leaking the secret. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '*****';
    return u.toString();
  } catch {
    // Not a URL: a password may still sit between `:` and `@`.
    return url.replace(/(:\/\/[^:/@\s]*:)[^@\s]*@/, '$1*****@').replace(/(password=)[^&\s]*/gi, '$1*****');
  }
}

const EXAMPLE = 'postgres://user:password@host:5432/database';

/**
 * Why `url` cannot be a PostgreSQL connection string, or null when it can. pg reads a URL (postgres:, postgresql:,
 * socket:) or a socket folder starting with `/`; anything else it resolves against a dummy base and connects with
 * no user.
 */
export function connectionUrlProblem(url: string): string | null {
  if (url.trim() === '') return 'is empty';
  if (url.startsWith('/')) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `is not a URL (${JSON.stringify(maskUrl(url))})`;
  }
  if (!['postgres:', 'postgresql:', 'socket:'].includes(parsed.protocol)) {
    return `is not a PostgreSQL URL: it starts with "${parsed.protocol}" where postgres:// or postgresql:// belongs (${JSON.stringify(maskUrl(url))})`;
  }
  return null;
}

/** The message for a bad URL that came from `source` (`--database-url`, `DATABASE_URL`), or null when it is usable. */
export function checkConnectionUrl(url: string, source: string): string | null {
  const problem = connectionUrlProblem(url);
  if (!problem) return null;
  return `${source} ${problem}. Nothing was connected to and nothing was changed. Set ${source} to a PostgreSQL URL such as ${EXAMPLE}.`;
}

/**
 * The problem with a Knex config's `connection`, or null. A function or an object without connectionString is
 * left to Knex and pg: only the forms that fail with a misleading message are judged here.
 */
export function knexConnectionProblem(config: { client?: unknown; connection?: unknown }): string | null {
  const conn = config.connection;
  const envHint =
    process.env.DATABASE_URL === undefined
      ? ' DATABASE_URL is not set in this environment: if the config reads process.env.DATABASE_URL, set it'
      : process.env.DATABASE_URL.trim() === ''
        ? ' DATABASE_URL is set but empty: if the config reads process.env.DATABASE_URL, give it a value'
        : '';
  if (conn === undefined || conn === null) {
    return (
      `the Knex config has no \`connection\`, so there is nothing to connect to; nothing was changed.${envHint}` +
      `${envHint ? ' (' : ' Give knex.connection a PostgreSQL URL ('}e.g. ${EXAMPLE}), or pass --database-url.`
    );
  }
  const url = typeof conn === 'string' ? conn : typeof conn === 'object' && typeof (conn as { connectionString?: unknown }).connectionString === 'string' ? (conn as { connectionString: string }).connectionString : null;
  if (url === null) return null;
  const problem = connectionUrlProblem(url);
  if (!problem) return null;
  const what = typeof conn === 'string' ? 'knex.connection' : 'knex.connection.connectionString';
  return `${what} ${problem}; nothing was connected to and nothing was changed.${envHint}${envHint ? ' (' : ' Set it to a PostgreSQL URL ('}e.g. ${EXAMPLE}), or pass --database-url.`;
}
