import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
/**
 * A dynamic import built at run time, so that no compiler of either build turns it into require(), which can load
 * neither a file URL nor an ES module. (esbuild, which makes dist/cjs, keeps a plain `import()`; a plain one would also
 * resolve tsx's bare specifiers below from this file's folder, which no test of an installed package covers yet.)
 */
const dynamicImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>;

const TYPESCRIPT = /\.[cm]?ts$/i;
let generation = 0;

/**
 * From the second call in a process on, project files are imported afresh: Node keeps every module it loaded by URL
 * (CommonJS ones by path), so a second CLI run in one process (the bin's `main` called again, as a test runner or a
 * REPL does) would see the config and migrations as the first run found them, not as they are on disk now.
 */
export function freshProjectImports(): void {
  generation++;
}

/** The URL to import: a project file (not a package's) gets a query of this generation, and leaves the require cache. */
function freshUrl(specifier: string, file: string): string {
  if (generation < 2 || !specifier.startsWith('file:') || file.includes('/node_modules/')) return specifier;
  delete createRequire(file).cache[file];
  const url = new URL(specifier);
  url.searchParams.set('umzug-load', String(generation));
  return url.href;
}
let typescript: Promise<void> | null = null;

/**
 * Imports a module; a TypeScript file that Node cannot load by itself (no loader registered: the bin, a plain
 * `node` process) is loaded through tsx, registered on first need. tsx is an optional peer: a JavaScript-only
 * project never loads it, nor installs esbuild.
 */
export async function importModule(specifier: string): Promise<Record<string, unknown>> {
  const path = specifier.startsWith('file:') ? fileURLToPath(specifier) : specifier;
  // Node keeps a failed load of a URL, so tsx is registered before the first TypeScript file, not after a failure.
  // Under a loader already (tsx, ts-node), registering tsx once more changes nothing that file will see.
  if (TYPESCRIPT.test(path) && !nativeTypeScript()) await (typescript ??= registerTypeScript(path));
  return dynamicImport(freshUrl(specifier, path));
}

/** Node's own type stripping (22.6+ with the flag, 23.6+ by default) loads .ts files without tsx. */
function nativeTypeScript(): boolean {
  const mode = (process.features as { typescript?: unknown }).typescript;
  return mode === 'strip' || mode === 'transform';
}

async function registerTypeScript(file: string): Promise<void> {
  let esm: { register(): unknown };
  let cjs: { register(): unknown };
  try {
    esm = (await dynamicImport('tsx/esm/api')) as unknown as { register(): unknown };
    cjs = (await dynamicImport('tsx/cjs/api')) as unknown as { register(): unknown };
  } catch {
    typescript = null;
    throw new Error(`${file} is TypeScript, and loading it needs tsx, which is not installed. Run \`npm install --save-dev tsx\`, or write the file in JavaScript. Nothing was run.`);
  }
  // Both: a .ts file in a package without "type": "module" is CommonJS, which the ESM hook hands to require().
  esm.register();
  cjs.register();
}
