/**
 * `--json` promises a stream a tool can parse line by line. Muting the loggers we know of did not keep that promise:
 * anything can print while a command runs (Umzug's logger, a logger captured before --json muted the live one, Knex's
 * `console.log` warnings, a user's migration), and one such line broke a parse. So while a --json command runs,
 * stdout itself is redirected to stderr, and only the documents written through printJson reach the real stdout,
 * each on one line. People still see every message, on stderr.
 */

type Write = (...args: unknown[]) => boolean;

let realWrite: Write | null = null;
let depth = 0;

/** Writes one JSON document as one line to the real stdout, whether or not stdout is redirected. */
export function printJson(value: unknown): void {
  writeJsonLine(JSON.stringify(value));
}

/** A line that is already one JSON document (the backfill's progress events), to the real stdout. */
export function writeJsonLine(line: string): void {
  const text = line.endsWith('\n') ? line : `${line}\n`;
  if (realWrite) realWrite(text);
  else process.stdout.write(text);
}

/** Runs `fn` with every other write to stdout sent to stderr; nests (the bin and the CLI parser both wrap). */
export async function withJsonStdout<T>(fn: () => Promise<T>): Promise<T> {
  const stdout = process.stdout as unknown as { write: Write };
  const original = stdout.write;
  if (depth === 0) {
    realWrite = original.bind(process.stdout);
    const toStderr = (process.stderr.write as unknown as Write).bind(process.stderr);
    stdout.write = (...args: unknown[]) => toStderr(...args);
  }
  depth++;
  try {
    return await fn();
  } finally {
    depth--;
    if (depth === 0) {
      stdout.write = original;
      realWrite = null;
    }
  }
}

/** Whether the command line asks for JSON: `--json` before a `--` that would end the options. */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}
