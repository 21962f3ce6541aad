// `npm run bench [-- --sizes 100k,1m]`: the benchmarks of this package (not part of `npm test`).
import { main } from './backfill.js';

await main(process.argv.slice(2));
