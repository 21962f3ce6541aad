// Runs `up` for a project in a separate process, so that a test can kill it with SIGKILL mid-way.
// argv: databaseUrl projectDir batchSize pauseMs [more backfill options as JSON]
import { zeroDowntime } from '../../lib/index.js';
import { knexFor, silentLogger } from './pg.js';

const [url, dir, batchSize, pauseMs, more] = process.argv.slice(2);
const knex = knexFor(url!);
const umzug = zeroDowntime({
  knex,
  cwd: dir!,
  contract: { after: 0 },
  backfill: { batchSize: Number(batchSize), pause: Number(pauseMs), ...(more ? (JSON.parse(more) as object) : {}) },
  logger: silentLogger,
});
umzug
  .up()
  .then(async () => {
    await knex.destroy();
    process.stdout.write('done\n');
  })
  .catch(async (e: unknown) => {
    process.stderr.write(String((e as Error).stack ?? e) + '\n');
    await knex.destroy();
    process.exit(1);
  });
