import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const LIB_INDEX = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/index.ts');

/** A throwaway project folder with a migrations/ directory; files import the library by absolute path. */
export function tempProject(prefix: string): { dir: string; migrations: string; write(name: string, body: string): string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `zdt-${prefix}-`));
  const migrations = path.join(dir, 'migrations');
  mkdirSync(migrations);
  return {
    dir,
    migrations,
    write(name, body) {
      const file = path.join(migrations, name);
      writeFileSync(file, body.replaceAll('umzug-zero-downtime', LIB_INDEX));
      return file;
    },
  };
}

/**
 * A project whose one migration renames a column (the change most engine and CLI tests drive), with an optional
 * `umzug.config.ts` body for the tests that run the bin.
 */
export function renameProject(
  prefix: string,
  rename: { readonly file: string; readonly table: string; readonly from: string; readonly to: string },
  config?: string,
): { dir: string; migrations: string; write(name: string, body: string): string } {
  const project = tempProject(prefix);
  project.write(
    rename.file,
    `import { defineMigration, renameColumn } from 'umzug-zero-downtime';
export default defineMigration({ changes: [renameColumn({ table: ${JSON.stringify(rename.table)}, from: ${JSON.stringify(rename.from)}, to: ${JSON.stringify(rename.to)} })] });
`,
  );
  if (config !== undefined) writeFileSync(path.join(project.dir, 'umzug.config.ts'), config);
  return project;
}
