// The CommonJS half of `npm run build`: lib/ transpiled file by file by esbuild (no bundling, the same module graph as
// dist/esm), with the declarations tsc wrote for dist/esm copied beside it. tsc has already type-checked these very
// sources for the ESM half; a second tsc program only to change the module format took as long again (about 14 s).
// dist/cjs is CommonJS inside a "type": "module" package: its own package.json tells Node so.
import { buildSync } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const lib = path.join(root, 'lib');
const esm = path.join(root, 'dist/esm');
const cjs = path.join(root, 'dist/cjs');
// The bin is an ES module entry (it reads import.meta); CommonJS users require the library, never run the bin from here.
const esmOnly = new Set(['cli/bin', 'cli/main']);

function files(dir, keep) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? files(full, keep) : keep(full) ? [full] : [];
  });
}
const stem = (base, file) => path.relative(base, file).replace(/\.d\.ts$|\.ts$/, '');

const sources = files(lib, (f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).filter((f) => !esmOnly.has(stem(lib, f)));
const result = buildSync({
  entryPoints: sources,
  outdir: cjs,
  outbase: lib,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  logLevel: 'warning',
});
if (result.errors.length > 0) process.exit(1);

for (const d of files(esm, (f) => f.endsWith('.d.ts'))) {
  if (esmOnly.has(stem(esm, d))) continue;
  const to = path.join(cjs, path.relative(esm, d));
  mkdirSync(path.dirname(to), { recursive: true });
  copyFileSync(d, to);
}
writeFileSync(path.join(cjs, 'package.json'), JSON.stringify({ type: 'commonjs' }) + '\n');
