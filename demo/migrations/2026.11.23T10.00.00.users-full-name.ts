import { defineMigration, renameColumn } from '../../lib/index.js';

// The demo's migration: `name` becomes `full_name` while both application versions keep writing.
export default defineMigration({
  changes: [renameColumn({ table: 'users', from: 'name', to: 'full_name' })],
});
