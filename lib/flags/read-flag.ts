import type { Change } from '../migration.js';
import { checkFlagName } from './names.js';

/**
 * Declares the read-cutover flag of any change: its contract waits until the flag has been at 100 % for the safety
 * window. `withReadFlag(renameColumn({ … }), 'users-full-name')`; renameColumn and addColumn also take `readFlag`.
 */
export function withReadFlag(change: Change, flag: string): Change {
  const name = checkFlagName(flag, 'readFlag');
  return { ...change, describe: (catalog, ctx) => ({ ...change.describe(catalog, ctx), readFlag: name }) };
}
