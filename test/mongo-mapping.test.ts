import { expect } from 'chai';
import type pg from 'pg';
import { Binary, BSONRegExp, Code, Decimal128, Double, Int32, Long, MaxKey, MinKey, ObjectId, Timestamp, UUID } from 'mongodb';
import * as bson from 'mongodb';
import { DocumentMapper } from '../lib/mongo/mapper.js';
import { resolveMove, allColumns, type MongoToPostgresOptions } from '../lib/mongo/move.js';
import { plainDecimal } from '../lib/mongo/decimal.js';
import { fromBson, jsonbText, parseJson, compactJson } from '../lib/mongo/json.js';
import { toBson } from '../lib/mongo/json-to-bson.js';
import { rowMd5 } from '../lib/mongo/row-hash.js';
import { createTargetTable, mongoStateTables, upsertRowsSql, rowHashesSql } from '../lib/mongo/sql.js';
import { rowToDocument } from '../lib/mongo/reverse.js';
import { freshDatabase, pgClient } from './support/pg.js';

const options: MongoToPostgresOptions = {
  collection: 'things',
  table: 'things',
  columns: [
    { name: 'name', type: 'text' },
    { name: 'amount', type: 'numeric' },
    { name: 'big', type: 'bigint' },
    { name: 'small', type: 'integer' },
    { name: 'ratio', type: 'double precision' },
    { name: 'ok', type: 'boolean' },
    { name: 'at', type: 'timestamptz' },
    { name: 'doc', type: 'jsonb' },
    { name: 'blob', type: 'bytea' },
    { name: 'uid', type: 'uuid' },
    { name: 'ref', type: 'objectid' },
    { name: 'city', type: 'text', from: 'address.city' },
  ],
  unmapped: { column: 'extra' },
};

const id = () => new ObjectId();

describe('Mongo → PostgreSQL type rules (mapper only, no server: Decimal128, NaN, MinKey cannot be stored in FerretDB)', () => {
  const mapper = new DocumentMapper(resolveMove(options));
  const cell = (doc: Record<string, unknown>, column: string) => {
    const r = mapper.map({ _id: id(), ...doc });
    if (!r.ok) throw new Error(r.reason);
    const i = allColumns(mapper.move).findIndex((c) => c.name === column);
    return r.row.cells[i]!;
  };
  const reason = (doc: Record<string, unknown>) => {
    const r = mapper.map({ _id: id(), ...doc });
    expect(r.ok, 'expected the document to be refused').to.equal(false);
    return (r as { reason: string }).reason;
  };

  it('Decimal128 → numeric keeps every digit and the scale, in the form PostgreSQL prints', () => {
    expect(cell({ amount: Decimal128.fromString('1.50') }, 'amount').param).to.equal('1.50');
    expect(cell({ amount: Decimal128.fromString('1.5E+3') }, 'amount').param).to.equal('1500');
    expect(cell({ amount: Decimal128.fromString('-0.00') }, 'amount').param).to.equal('0.00');
    expect(cell({ amount: Decimal128.fromString('1234567890123456789012345678901234') }, 'amount').param).to.equal('1234567890123456789012345678901234');
    expect(cell({ amount: Decimal128.fromString('1E-6176') }, 'amount').param).to.equal(`0.${'0'.repeat(6175)}1`);
    expect(cell({ amount: Decimal128.fromString('NaN') }, 'amount').param).to.equal('NaN');
    expect(cell({ amount: Decimal128.fromString('-Infinity') }, 'amount').param).to.equal('-Infinity');
    expect(cell({ amount: 0.1 }, 'amount').param).to.equal('0.1');
    expect(cell({ amount: 9007199254740993n }, 'amount').param).to.equal('9007199254740993');
    expect(reason({ amount: 'abc' })).to.match(/amount: expected a number .* found a string/);
  });

  it('Int64 exact, Int32 range checked, doubles only when integral', () => {
    expect(cell({ big: 9223372036854775807n }, 'big').param).to.equal('9223372036854775807');
    expect(cell({ big: Long.fromString('-9223372036854775808') }, 'big').param).to.equal('-9223372036854775808');
    expect(cell({ small: new Int32(-5) }, 'small').param).to.equal('-5');
    expect(reason({ small: 2147483648n })).to.match(/out of range for integer/);
    expect(reason({ big: 1.5 })).to.match(/expected an integer/);
    expect(cell({ ratio: -0 }, 'ratio').param).to.equal('-0');
    expect(cell({ ratio: new Double(NaN) }, 'ratio').param).to.equal('NaN');
    expect(reason({ ratio: 9007199254740993n })).to.match(/cannot be stored exactly as double/);
  });

  it('Date → timestamptz, BC and five-digit years included; invalid dates refused', () => {
    expect(cell({ at: new Date('2024-02-29T12:34:56.789Z') }, 'at').param).to.equal('2024-02-29 12:34:56.789+00');
    expect(cell({ at: new Date(Date.UTC(-43, 2, 15)) }, 'at').param).to.equal('0044-03-15 00:00:00.000+00 BC');
    expect(cell({ at: new Date(Date.UTC(12345, 0, 1)) }, 'at').param).to.equal('12345-01-01 00:00:00.000+00');
    expect(reason({ at: new Date(NaN) })).to.match(/invalid Date/);
    expect(reason({ at: new Date(-8.64e15) })).to.match(/before the earliest timestamptz/);
  });

  it('missing vs null: both NULL for a scalar column; for jsonb, missing is NULL and null is JSON null; required says which', () => {
    expect(cell({}, 'name').param).to.equal(null);
    expect(cell({ name: null }, 'name').param).to.equal(null);
    expect(cell({}, 'doc').param).to.equal(null);
    expect(cell({ doc: null }, 'doc').param).to.equal('null');
    const strict = new DocumentMapper(resolveMove({ ...options, columns: [{ name: 'name', type: 'text', required: true }], unmapped: 'ignore' }));
    expect((strict.map({ _id: id() }) as { reason: string }).reason).to.match(/name: required, but missing/);
    expect((strict.map({ _id: id(), name: null }) as { reason: string }).reason).to.match(/name: required, but null/);
  });

  it('NUL characters: quarantined by default (PostgreSQL text cannot hold them), stripped on request', () => {
    expect(reason({ name: 'a\u0000b' })).to.match(/NUL character/);
    expect(reason({ doc: { deep: ['x\u0000'] } })).to.match(/doc\.deep\[0\].*NUL/);
    const strip = new DocumentMapper(resolveMove({ ...options, nul: 'strip' }));
    const r = strip.map({ _id: id(), name: 'a\u0000b' });
    expect(r.ok && r.row.cells[1]!.param).to.equal('ab');
    expect(reason({ name: 'bad \ud800 surrogate' })).to.match(/unpaired UTF-16 surrogate/);
  });

  it('nested documents and arrays → jsonb with exact numbers and Extended JSON for the other BSON types', () => {
    const oid = new ObjectId('65f000000000000000000001');
    const c = cell(
      {
        doc: {
          long: 9007199254740993n,
          dec: Decimal128.fromString('0.10'),
          decNaN: Decimal128.fromString('NaN'),
          when: new Date(0),
          old: new Date(Date.UTC(1900, 0, 1)),
          oid,
          bin: new Binary(Buffer.from([1, 2, 3]), 0),
          re: new BSONRegExp('^a', 'i'),
          ts: new Timestamp({ t: 5, i: 6 }),
          min: new MinKey(),
          max: new MaxKey(),
          code: new Code('x()'),
          negzero: -0,
          arr: [1, 'two', null, { three: 3 }],
        },
      },
      'doc',
    );
    const parsed = parseJson(c.param as string);
    expect(jsonbText(parsed)).to.equal(c.piece);
    expect(c.param).to.contain('"long":9007199254740993');
    expect(c.param).to.contain('"dec":0.10');
    expect(c.param).to.contain('"decNaN":{"$numberDecimal":"NaN"}');
    expect(c.param).to.contain('"when":{"$date":"1970-01-01T00:00:00.000Z"}');
    expect(c.param).to.contain(`"old":{"$date":{"$numberLong":"${Date.UTC(1900, 0, 1)}"}}`);
    expect(c.param).to.contain('"oid":{"$oid":"65f000000000000000000001"}');
    expect(c.param).to.contain('"min":{"$minKey":1}');
    expect(c.param).to.contain('"negzero":{"$numberDouble":"-0.0"}');
    // and back: every value of its BSON type again (numbers by value: jsonb has one number type)
    const back = toBson(parsed, bson) as Record<string, unknown>;
    expect(back.long).to.equal(9007199254740993n);
    expect(String(back.dec)).to.equal('0.10');
    expect((back.oid as ObjectId).toHexString()).to.equal(oid.toHexString());
    expect((back.when as Date).getTime()).to.equal(0);
    expect((back.old as Date).getTime()).to.equal(Date.UTC(1900, 0, 1));
    expect(Object.is((back.negzero as Double).value, -0)).to.equal(true);
    expect((back.min as { _bsontype: string })._bsontype).to.equal('MinKey');
    expect(compactJson(fromBson(back, (s) => s, 'x'))).to.equal(c.param);
  });

  it('type mismatches, wrong _id types, fields no column takes and schema failures are reasons, not exceptions', () => {
    expect(reason({ ok: 'yes' })).to.match(/ok: expected a Boolean, found a string/);
    expect(reason({ uid: 'not-a-uuid' })).to.match(/uid: expected a UUID/);
    expect(reason({ blob: new Binary(Buffer.from('x'), 5) })).to.match(/subtype 5/);
    expect(cell({ uid: new UUID('0190a6c2-0000-7000-8000-000000000001') }, 'uid').param).to.equal('0190a6c2-0000-7000-8000-000000000001');
    const r = mapper.map({ _id: 'a string id', name: 'x' });
    expect(r.ok).to.equal(false);
    expect((r as { reason: string }).reason).to.match(/_id: expected an ObjectId, found a string.*key column id holds objectid/);
    const strict = new DocumentMapper(resolveMove({ ...options, unmapped: 'quarantine' }));
    expect((strict.map({ _id: id(), name: 'x', stray: 1, address: { city: 'A', zip: '1' } }) as { reason: string }).reason).to.match(
      /fields no column takes: stray, address\.zip/,
    );
    const withSchema = new DocumentMapper(resolveMove({ ...options, schema: { properties: { small: { minimum: 0 } } } }));
    expect((withSchema.map({ _id: id(), small: -1 }) as { reason: string }).reason).to.match(/fails the schema: \/small must be >= 0/);
    const throwing = new DocumentMapper(resolveMove({ ...options, unmapped: 'ignore', map: () => { throw new Error('no'); } }));
    expect((throwing.map({ _id: id() }) as { reason: string }).reason).to.match(/map\(\) refused the document: no/);
    // A map returns every column itself: an unmapped-fields column beside it is refused when the move is described.
    expect(() => resolveMove({ ...options, unmapped: { column: 'extra' }, map: () => ({}) })).to.throw(/unmapped: \{ column \} cannot be combined with map/);
  });

  it('plainDecimal prints what PostgreSQL numeric prints', () => {
    expect(plainDecimal('007.50')).to.equal('7.50');
    expect(plainDecimal('-0')).to.equal('0');
    expect(plainDecimal('1e-3')).to.equal('0.001');
    expect(plainDecimal('1.2E+1')).to.equal('12');
    expect(plainDecimal('abc')).to.equal(null);
  });

  it('reverse mapping of a row gives BSON values: numeric → Decimal128, bigint → Int64, nested paths rebuilt', () => {
    const move = resolveMove(options);
    const cols = allColumns(move);
    const texts = cols.map((c) =>
      ({ id: '65f000000000000000000002', name: 'n', amount: '1.50', big: '9223372036854775807', small: '7', ratio: Buffer.alloc(8).fill(0).toString('hex'), ok: 'true', at: '86400000000', doc: '{"a": 1}', blob: '0102', uid: '0190a6c2-0000-7000-8000-000000000001', ref: null, city: 'Bern', extra: '{"zip": "3000"}' })[c.name] ?? null,
    );
    const doc = rowToDocument(move, texts, 4n, bson);
    expect((doc._id as ObjectId).toHexString()).to.equal('65f000000000000000000002');
    expect(String(doc.amount)).to.equal('1.50');
    expect((doc.amount as { _bsontype: string })._bsontype).to.equal('Decimal128');
    expect(doc.big).to.equal(9223372036854775807n);
    expect(doc.small).to.equal(7);
    expect((doc.at as Date).getTime()).to.equal(86400000);
    expect(doc.address).to.deep.equal({ city: 'Bern' });
    expect(doc.zip).to.equal('3000');
    expect(doc._zdv).to.equal(4n);
    expect('ref' in doc).to.equal(false);
  });
});

describe('Mongo → PostgreSQL row hash: PostgreSQL computes the same text as the mapper', function () {
  let client: pg.Client;
  before(async () => {
    client = await pgClient(await freshDatabase('mongo_mapping'));
  });
  after(() => client?.end());

  it('every column type, odd strings and jsonb key order give identical row md5 on both sides', async () => {
    const move = resolveMove(options);
    const mapper = new DocumentMapper(move);
    const cols = allColumns(move);
    const t = { schema: 'public', name: 'things' };
    for (const s of mongoStateTables('zero_downtime').map((x) => x.text)) {
      await client.query('CREATE SCHEMA IF NOT EXISTS zero_downtime');
      await client.query(s);
    }
    await client.query(createTargetTable(t, cols, 'id', 'objectid').text);
    const docs: Record<string, unknown>[] = [];
    const strings = ['', 'plain', 'quote " backslash \\ tab \t nl \n cr \r bell \u0007 del \u007f', 'ünïcödé ✓ 𝄞 emoji 😀', '\u2028\u2029', '</script>'];
    for (let i = 0; i < 300; i++) {
      const s = strings[i % strings.length]!;
      docs.push({
        _id: new ObjectId(),
        name: i % 7 === 0 ? null : s,
        amount: i % 3 === 0 ? Decimal128.fromString(`${i}.${'0'.repeat(i % 5)}1E${(i % 9) - 4}`) : i % 3 === 1 ? i / 7 : BigInt(i) * 12345678901234567n,
        big: BigInt(i % 4) * -3074457345618258602n,
        small: i - 150,
        ratio: [0.1, -0, 1e300, 5e-324, -1.5e-7, i / 3][i % 6],
        ok: i % 2 === 0,
        at: new Date(Date.UTC(1 + ((i * 37) % 12000), i % 12, 1 + (i % 28), i % 24, i % 60, i % 60, i % 1000)),
        doc: { [s]: i, b: [s, { zz: 1, a: 2, [`k${i}`]: null }], aaa: 9007199254740993n + BigInt(i), dec: Decimal128.fromString('1.000'), d: new Date(i * 1e9), o: new ObjectId() },
        blob: new Binary(Buffer.from([i % 256, 0, 255])),
        uid: new UUID(),
        ref: new ObjectId(),
        address: { city: s, zip: String(i) },
        other: i % 4 === 0 ? { nested: [1, 2, { x: s }] } : undefined,
      });
    }
    const rows = docs.map((d) => {
      const r = mapper.map(d);
      if (!r.ok) throw new Error(r.reason);
      return r.row;
    });
    const arrays = cols.map((_c, i) => rows.map((r) => r.cells[i]!.param));
    const res = await client.query(upsertRowsSql(t, cols, 'id', 'zero_downtime'), ['things', ...arrays, rows.map((r) => r.version.toString())]);
    expect(res.rows[0].written).to.equal(300);
    const pgHashes = await client.query<{ k: string; h: string }>(rowHashesSql(t, cols, 'id', 'objectid', false, false));
    const js = new Map(rows.map((r) => [r.key, rowMd5(r.cells)]));
    const differing = pgHashes.rows.filter((x) => js.get(x.k) !== x.h);
    if (differing.length > 0) {
      const k = differing[0]!.k;
      const row = rows.find((r) => r.key === k)!;
      const pgText = await client.query(`SELECT ${'jsonb_build_array'}(${cols.map((c) => `${c.name}::text`).join(', ')})::text AS t FROM things WHERE id = $1`, [k]);
      throw new Error(`row ${k} differs: ${JSON.stringify(row.cells.map((c) => c.piece))} vs ${pgText.rows[0].t}`);
    }
    expect(pgHashes.rows).to.have.length(300);
  });
});
