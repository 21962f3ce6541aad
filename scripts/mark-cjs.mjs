// dist/cjs holds CommonJS output inside a "type": "module" package: a nested package.json tells Node so.
import { writeFileSync } from 'node:fs';
writeFileSync(new URL('../dist/cjs/package.json', import.meta.url), JSON.stringify({ type: 'commonjs' }) + '\n');
