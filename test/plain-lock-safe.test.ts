import { expect } from 'chai';
import { zeroDowntime } from '../lib/index.js';
import { pgClient, useTestDatabase } from './support/pg.js';
import { tempProject } from './support/project.js';

describe('plain migrations run lock-safe: lock_timeout, whole retries, CONCURRENTLY outside a transaction', function () {
  this.timeout(120_000);
  const t = useTestDatabase('plain_lock_safe', async ({ knex }) => {
    await knex.raw(`CREATE TABLE "orders; x" (id bigint PRIMARY KEY, note text)`);
    await knex.raw(`INSERT INTO "orders; x" SELECT g, 'n' FROM generate_series(1, 1000) g`);
  });

  it('behind a long reader, an ALTER waits at most lock_timeout per attempt (readers are not queued behind it), is retried whole, and lands once', async () => {
    const p = tempProject('plain-lock-safe');
    // Two statements: a retry must not leave the first one applied twice (the whole attempt rolls back).
    p.write(
      '001.alter.js',
      `exports.up = async ({ context }) => {\n  await context.knex.raw('CREATE TABLE audit_marks (id serial PRIMARY KEY)');\n  await context.knex.raw('ALTER TABLE "orders; x" ADD COLUMN flag boolean');\n};\nexports.down = async ({ context }) => { await context.knex.raw('ALTER TABLE "orders; x" DROP COLUMN flag'); await context.knex.raw('DROP TABLE audit_marks'); };\n`,
    );
    const warnings: Record<string, unknown>[] = [];
    const logger = { info: () => {}, debug: () => {}, error: () => {}, warn: (m: Record<string, unknown>) => void warnings.push(m) };
    const u = zeroDowntime({ knex: { client: 'pg', connection: t.url, pool: { min: 0, max: 4 } }, cwd: p.dir, logger, lock: { timeout: '200ms' }, lint: 'off' });
    const holder = await pgClient(t.url, 'long-reader');
    const reader = await pgClient(t.url, 'app-reader');
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT count(*) FROM "orders; x"`); // ACCESS SHARE until the transaction ends
      const up = u.up();
      // Meanwhile the application's reads keep going: at most one lock_timeout behind a waiting ALTER.
      const readTimes: number[] = [];
      for (let i = 0; i < 10; i++) {
        const s = performance.now();
        await reader.query(`SELECT note FROM "orders; x" WHERE id = $1`, [1 + i]);
        readTimes.push(performance.now() - s);
        await new Promise((r) => setTimeout(r, 150));
      }
      await holder.query('COMMIT');
      await up;
      expect(Math.max(...readTimes), readTimes.map((x) => x.toFixed(0)).join(' ')).to.be.below(1000);
    } finally {
      await holder.end();
      await reader.end();
    }
    const retries = warnings.filter((w) => w.event === 'plain-migration-retry');
    expect(retries.length, JSON.stringify(warnings)).to.be.greaterThan(0);
    expect(retries[0]!.code).to.equal('55P03');
    const col = await t.knex.raw(`SELECT 1 FROM information_schema.columns WHERE table_name = 'orders; x' AND column_name = 'flag'`);
    expect(col.rows).to.have.length(1);
    await u.close();
  });

  it('a CONCURRENTLY migration runs outside a transaction, and says it does', async () => {
    const p = tempProject('plain-concurrently');
    p.write('001.index.js', `exports.up = async ({ context }) => { await context.knex.raw('CREATE INDEX CONCURRENTLY orders_note ON "orders; x" (note)'); };\nexports.down = async () => {};\n`);
    const warnings: Record<string, unknown>[] = [];
    const logger = { info: () => {}, debug: () => {}, error: () => {}, warn: (m: Record<string, unknown>) => void warnings.push(m) };
    const u = zeroDowntime({ knex: { client: 'pg', connection: t.url, pool: { min: 0, max: 4 } }, cwd: p.dir, logger, lint: 'off' });
    try {
      await u.up();
    } finally {
      await u.close();
    }
    expect(warnings.map((w) => w.event)).to.include('plain-migration-outside-transaction');
    const idx = await t.knex.raw(`SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_note'::regclass`);
    expect(idx.rows).to.deep.equal([{ indisvalid: true }]);
  });
});
