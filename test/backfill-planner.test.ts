import { expect } from 'chai';
import type { Connection } from '../lib/db/db.js';
import { makePlanner } from '../lib/backfill/batch.js';
import type { Chunk } from '../lib/backfill/chunks.js';
import { useTestDatabase } from './support/pg.js';

/** The SQL a planner runs, by watching the connection it is given. */
function watched(c: Connection): { c: Connection; texts: string[] } {
  const texts: string[] = [];
  return {
    texts,
    c: {
      ...c,
      query: ((text: string, values?: never) => {
        texts.push(text);
        return c.query(text, values);
      }) as Connection['query'],
    },
  };
}

const asChunk = (p: { lo: string[] | null; hi: string[] | null; final: boolean }, chunkNo: number): Chunk => ({ chunkNo, leaf: null, lo: p.lo, hi: p.hi, lastKey: null, final: p.final, endKey: null });

describe('backfill chunk planning: arithmetic on a dense integer key, an index walk otherwise', function () {
  const t = useTestDatabase('backfill_planner', async ({ knex }) => {
    await knex.raw(`CREATE TABLE dense (id bigint PRIMARY KEY, v int)`);
    await knex.raw(`INSERT INTO dense SELECT g, 0 FROM generate_series(1001, 11000) g`);
    await knex.raw(`CREATE TABLE sparse (id bigint PRIMARY KEY, v int)`);
    await knex.raw(`INSERT INTO sparse SELECT g * 1000, 0 FROM generate_series(1, 10000) g`);
    await knex.raw(`ANALYZE dense; ANALYZE sparse`);
  });

  async function plan(table: string, rows: number): Promise<{ chunks: { lo: string[] | null; hi: string[] | null; final: boolean }[]; texts: string[] }> {
    const planner = makePlanner({ kind: 'keys', columns: [{ name: 'id', type: 'bigint' }], source: 'primary key' }, { table: { schema: 'public', name: table }, set: [] }, 2500, 50, rows);
    return t.db.withConnection(async (conn) => {
      const { c, texts } = watched(conn);
      const chunks: { lo: string[] | null; hi: string[] | null; final: boolean }[] = [];
      let after: Chunk | null = null;
      for (let i = 0; i < 20; i++) {
        const p = await planner(c, after);
        chunks.push({ lo: p.lo, hi: p.hi, final: p.final });
        if (p.final) break;
        after = asChunk(p, i);
      }
      return { chunks, texts };
    });
  }

  it('a dense key is cut at min − 1 + k × 2500 × range ÷ rows, without walking the index', async () => {
    const { chunks, texts } = await plan('dense', 10_000);
    expect(chunks).to.deep.equal([
      { lo: null, hi: ['3500'], final: false },
      { lo: ['3500'], hi: ['6000'], final: false },
      { lo: ['6000'], hi: ['8500'], final: false },
      { lo: ['8500'], hi: null, final: true },
    ]);
    expect(texts.some((s) => /OFFSET/.test(s))).to.equal(false);
  });

  it('a key range far wider than the rows (ids 1000 apart) is walked in the index, 2500 keys a chunk', async () => {
    const { chunks, texts } = await plan('sparse', 10_000);
    expect(chunks.map((c) => c.hi)).to.deep.equal([['2500000'], ['5000000'], ['7500000'], ['10000000'], null]);
    expect(texts.some((s) => /OFFSET/.test(s))).to.equal(true);
  });

  it('an empty table is one open-ended chunk', async () => {
    await t.knex.raw(`CREATE TABLE empty_one (id bigint PRIMARY KEY)`);
    const { chunks } = await plan('empty_one', 1);
    expect(chunks).to.deep.equal([{ lo: null, hi: null, final: true }]);
  });
});
