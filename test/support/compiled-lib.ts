import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const LIB = path.join(ROOT, 'lib');
// The processes tests spawn besides the bin (support/backfill-child.ts, support/up-child.ts) import lib/ and these.
const SUPPORT = path.join(ROOT, 'test', 'support');
const OUT_ROOT = path.join(ROOT, '.test-build');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sources(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

let built: string | null = null;

/** Builds of other sources (an older checkout of lib/) left a day ago or more: no run still uses them. */
function prune(): void {
  const dayAgo = Date.now() - 86_400_000;
  for (const e of readdirSync(OUT_ROOT, { withFileTypes: true })) {
    const full = path.join(OUT_ROOT, e.name);
    if (e.isDirectory() && statSync(full).mtimeMs < dayAgo) rmSync(full, { recursive: true, force: true });
  }
}

/**
 * lib/ and test/support/ transpiled to JavaScript (esbuild, file by file, no bundling: the same module graph), for the processes a
 * test spawns: the `umzug` bin under tsx loads ~500 modules through its hooks and took twice as long to start
 * (1.5 s against 0.75 s), and the integration tier spawns it some 200 times. Types are checked by `npm test`'s
 * typecheck, and the published build by test/package-exports.test.ts. Keyed by the sources' content, so an edit of
 * lib/ is never run stale; built once per key (two mocha workers race to an atomic rename, the loser's copy is dropped).
 * Returns the folder that holds `lib/` (its `cli/bin.js`, `index.js`) and `test/support/`.
 */
export function compiledLib(): string {
  if (built) return built;
  const files = [...sources(LIB), ...sources(SUPPORT)].sort();
  const hash = createHash('sha256');
  for (const f of files) hash.update(path.relative(ROOT, f)).update('\0').update(readFileSync(f)).update('\0');
  const key = hash.digest('hex').slice(0, 16);
  const dir = path.join(OUT_ROOT, key);
  if (!existsSync(path.join(dir, 'lib', 'index.js'))) {
    mkdirSync(OUT_ROOT, { recursive: true });
    prune();
    const tmp = mkdtempSync(path.join(OUT_ROOT, `${key}-tmp-`));
    buildSync({ entryPoints: files, outdir: tmp, outbase: ROOT, format: 'esm', platform: 'node', target: 'node20', logLevel: 'silent' });
    // Packages resolve from the repository's node_modules (the folder is inside it); the .js files are ES modules.
    writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return (built = dir);
}

/** A compiled module of lib/, by its path there without the extension (`knex-migration-source`). */
export const compiledModule = (name: string): string => path.join(compiledLib(), 'lib', `${name}.js`);
/** A compiled module of test/support/ (`backfill-child`), run by plain node: the lib/ it imports is the compiled one. */
export const compiledSupport = (name: string): string => path.join(compiledLib(), 'test', 'support', `${name}.js`);
/** The compiled `umzug` bin. */
export const compiledBin = (): string => path.join(compiledLib(), 'lib', 'cli', 'bin.js');
/** The compiled root export, what a spawned process's `umzug-zero-downtime` resolves to. */
export const compiledIndex = (): string => path.join(compiledLib(), 'lib', 'index.js');
