// umzug-zero-downtime/openfeature: the flags as an OpenFeature provider (needs @openfeature/server-sdk).
export { ZeroDowntimeFlagProvider } from '../flags/openfeature.js';
