// `npm run bench [-- --sizes 100k,1m]`: the benchmarks of this package (not part of `npm test`).
// `npm run bench -- mongo [--docs 200k]`: the MongoDB → PostgreSQL move instead (needs FerretDB or MongoDB, see
// bench/README.md); `npm run bench -- all`: both, each with its defaults.
import { main as backfill } from './backfill.js';
import { main as mongo } from './mongo.js';

const argv = process.argv.slice(2);
const which = argv[0] === 'mongo' || argv[0] === 'backfill' || argv[0] === 'all' ? argv[0] : null;
const args = which ? argv.slice(1) : argv;
if (which === null || which === 'backfill') await backfill(args);
else if (which === 'mongo') await mongo(args);
else {
  await backfill([]);
  await mongo([]);
}
