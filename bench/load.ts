// The application side of the canary benchmark, each role in a process of its own so that neither the backfill's
// nor the other role's JavaScript delays what is timed (in production they are different processes, too).
//   tsx bench/load.ts writers URL TABLE ROWS N   → N writer loops until stdin closes; prints { ops }
//   tsx bench/load.ts probe URL TABLE ROWS       → one probe every 10 ms until stdin closes; prints [[at, ms], …]
import pg from 'pg';

const [role, url, table, rowsArg, nArg] = process.argv.slice(2);
const rows = Number(rowsArg);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
let running = true;
process.stdin.on('end', () => (running = false));
process.stdin.on('close', () => (running = false));
process.stdin.resume();

async function connect(app: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: app });
  await c.connect();
  return c;
}

if (role === 'writers') {
  // Application-like load: single-row updates and inserts in a loop with 1 ms think time.
  let ops = 0;
  await Promise.all(
    Array.from({ length: Number(nArg ?? 2) }, async (_x, w) => {
      const c = await connect(`zd-bench-writer-${w}`);
      let next = rows + 1 + w * 10_000_000;
      while (running) {
        if (Math.random() < 0.8) await c.query(`UPDATE ${table} SET b = b + 1 WHERE id = $1`, [1 + Math.floor(Math.random() * rows)]);
        else await c.query(`INSERT INTO ${table} (id, a, b) VALUES ($1::bigint, md5($1::text), 1)`, [next++]);
        ops++;
        await sleep(1);
      }
      await c.end();
    }),
  );
  process.stdout.write(JSON.stringify({ ops }) + '\n');
} else if (role === 'probe') {
  // The canary's query (one row by primary key), on a random row of the whole table each time.
  const c = await connect('zd-bench-probe');
  const samples: [number, number][] = [];
  while (running) {
    const t0 = performance.now();
    await c.query(`SELECT * FROM ${table} WHERE (id) = (CAST($1 AS bigint))`, [String(1 + Math.floor(Math.random() * rows))]);
    samples.push([Date.now(), performance.now() - t0]);
    await sleep(10);
  }
  await c.end();
  process.stdout.write(JSON.stringify(samples) + '\n');
} else {
  process.stderr.write(`usage: load.ts writers|probe URL TABLE ROWS [N]\n`);
  process.exit(2);
}
