// umzug-zero-downtime/flags: read-cutover flags for the application (a small import: no Umzug, no migration engine).
export { flags, FlagClient, type Flag, type FlagClientOptions, type FlagQueryable } from '../flags/client.js';
export { FlagStore, type FlagRecord, type FlagChange } from '../flags/store.js';
export { bucketOf, inRollout } from '../flags/hash.js';
export { withReadFlag } from '../flags/read-flag.js';
