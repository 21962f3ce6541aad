/**
 * `umzug lint` vs squawk on the same 100 SQL migrations, side by side (ABBA, whole commands), and `umzug lint` on
 * 100 Knex builder migrations (each one's up() run against the recorder):
 *
 *   npx tsx bench/lint.ts [--pairs 4]
 *
 * The SQL files are the lint corpus (test/fixtures/lint-corpus) repeated; squawk is squawk-cli, pinned, installed once
 * by scripts/squawk.sh (SQUAWK=… to use another).
 * Prints each command's median wall time per 100 migrations, ours ÷ squawk, and the host's CPU steal meanwhile.
 */
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArg, cpuTimes, fmt, percentile, stolenSince } from './support.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CORPUS = path.resolve(here, '../test/fixtures/lint-corpus');
const BIN = path.resolve(here, '../lib/cli/bin.ts');
const TSX = path.resolve(here, '../node_modules/tsx/dist/loader.mjs');
const SQUAWK = execFileSync('bash', [path.resolve(here, '../scripts/squawk.sh')], { encoding: 'utf8' }).trim();
const PAIRS = Number(benchArg('pairs') ?? '4');

function project(kind: 'sql' | 'knex'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `zd-bench-lint-${kind}-`));
  mkdirSync(path.join(dir, 'migrations'));
  const corpus = readdirSync(CORPUS).filter((f) => f.endsWith('.sql'));
  for (let i = 0; i < 100; i++) {
    const n = String(i).padStart(3, '0');
    if (kind === 'sql') copyFileSync(path.join(CORPUS, corpus[i % corpus.length]!), path.join(dir, 'migrations', `${n}.sql`));
    else
      writeFileSync(
        path.join(dir, 'migrations', `${n}.cjs`),
        `exports.up = async (knex) => {\n  await knex.schema.createTable('t${n}', (t) => { t.bigIncrements('id'); t.string('title'); t.index('title'); });\n  await knex.schema.alterTable('t${n}', (t) => { t.text('title').alter(); });\n  await knex.raw('ALTER TABLE t${n} RENAME COLUMN title TO name');\n};\nexports.down = async () => {};\n`,
      );
  }
  return dir;
}

function time(cmd: string, args: string[], cwd: string): Promise<number> {
  const started = performance.now();
  // Both exit 1 when they find something (they do): only the time matters here.
  return new Promise((resolve) => execFile(cmd, args, { cwd, env: { ...process.env, DATABASE_URL: '' }, maxBuffer: 1 << 26 }, () => resolve(performance.now() - started)));
}

async function main(): Promise<void> {
  const sql = project('sql');
  const knex = project('knex');
  const ours = () => time(process.execPath, ['--import', TSX, BIN, 'lint', '--json'], sql);
  const theirs = () => time(SQUAWK, ['--reporter', 'json', 'migrations/'], sql);
  const oursKnex = () => time(process.execPath, ['--import', TSX, BIN, 'lint', '--json'], knex);
  await ours();
  await theirs(); // warm both (file cache, tsx cache)
  const from = cpuTimes();
  const t: Record<'ours' | 'squawk' | 'knex', number[]> = { ours: [], squawk: [], knex: [] };
  for (let i = 0; i < PAIRS; i++) {
    // ABBA: ours, squawk, squawk, ours within each pair.
    t.ours.push(await ours());
    t.squawk.push(await theirs());
    t.squawk.push(await theirs());
    t.ours.push(await ours());
    t.knex.push(await oursKnex());
  }
  const med = (xs: number[]) => percentile(xs, 50);
  console.log(`100 SQL migrations: umzug lint ${fmt(med(t.ours))} ms (whole command: node, tsx, the parser), squawk ${fmt(med(t.squawk))} ms; ours ÷ squawk ${fmt(med(t.ours) / med(t.squawk))}`);
  console.log(`100 Knex builder migrations (each up() run against the recorder): umzug lint ${fmt(med(t.knex))} ms`);
  console.log(`${PAIRS} ABBA pairs; CPU steal ${stolenSince(from)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
