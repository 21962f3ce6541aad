import type { Connection } from '../db/db.js';
import type { TableName } from '../postgres/identifiers.js';
import { quarantineSql, tombstoneSql, upsertRowsSql } from './sql.js';
import type { MongoModule } from './driver.js';
import { DocumentMapper, type MappedRow } from './mapper.js';
import { allColumns, moveId, type MongoDocument, type MongoMove } from './move.js';

export type WriteSource = 'backfill' | 'dual-write' | 'reconcile';

export interface SinkResult {
  readonly written: number;
  readonly quarantined: number;
  /** Quarantine entries cleared because a newer version of the document now maps. */
  readonly resolved: number;
}

/**
 * Writes mapped documents into the target table, version-guarded, and unmappable ones into the quarantine with the
 * reason (a quarantined document with a usable key also leaves a tombstone at its version, so the table never shows
 * an older copy of a document that now only lives in the quarantine). One call is one statement set on the caller's
 * connection: inside the caller's transaction, with the caller's progress row.
 */
export class PostgresSink {
  readonly mapper: DocumentMapper;
  readonly id: string;
  private readonly cols: ReturnType<typeof allColumns>;
  private readonly upsertSql: string;
  private readonly tombSql: string;
  private readonly quarSql: string;

  constructor(
    readonly move: MongoMove,
    readonly table: TableName,
    readonly stateSchema: string,
    private readonly bson: MongoModule,
  ) {
    this.mapper = new DocumentMapper(move);
    this.id = moveId(table);
    this.cols = allColumns(move);
    this.upsertSql = upsertRowsSql(table, this.cols, move.key.column, stateSchema);
    this.tombSql = tombstoneSql(table, move.key.column, move.key.type);
    this.quarSql = quarantineSql(stateSchema);
  }

  async write(conn: Connection, docs: readonly MongoDocument[], source: WriteSource): Promise<SinkResult> {
    const rows = new Map<string, MappedRow>();
    const bad: { docId: string; key: string | null; version: bigint; reason: string; document: string }[] = [];
    for (const doc of docs) {
      const r = this.mapper.map(doc);
      if (r.ok) {
        const prev = rows.get(r.row.key);
        // One statement cannot update a row twice: keep the newest version of a key.
        if (!prev || prev.version < r.row.version) rows.set(r.row.key, r.row);
      } else {
        bad.push({ docId: this.docId(doc._id), key: r.key, version: r.version, reason: r.reason, document: this.ejson(doc) });
      }
    }
    let written = 0;
    let resolved = 0;
    if (rows.size > 0) {
      const list = [...rows.values()];
      const arrays = this.cols.map((_c, i) => list.map((r) => r.cells[i]!.param));
      const res = await conn.query<{ written: number; resolved: number }>(this.upsertSql, [this.id, ...arrays, list.map((r) => r.version.toString())]);
      written = res.rows[0]!.written;
      resolved = res.rows[0]!.resolved;
    }
    if (bad.length > 0) {
      await conn.query(this.quarSql, [
        this.id,
        bad.map((b) => b.docId),
        bad.map((b) => b.key),
        bad.map((b) => b.version.toString()),
        bad.map((b) => b.reason),
        bad.map((b) => b.document),
        bad.map(() => this.move.collection.name),
        bad.map(() => source),
      ]);
      for (const b of bad) if (b.key !== null) await conn.query(this.tombSql, [b.key, b.version.toString()]);
    }
    return { written, quarantined: bad.length, resolved };
  }

  async tombstone(conn: Connection, key: string, version: bigint): Promise<number> {
    const r = await conn.query(this.tombSql, [key, version.toString()]);
    return r.rowCount;
  }

  /** The `_id` in canonical Extended JSON: unique across BSON types, exact, readable. */
  docId(id: unknown): string {
    return this.bson.BSON.EJSON.stringify(id as never, { relaxed: false });
  }

  /** The whole document, exactly (canonical Extended JSON; a NUL character is escaped as \u0000, so text can hold it). */
  ejson(doc: MongoDocument): string {
    try {
      return this.bson.BSON.EJSON.stringify(doc, { relaxed: false });
    } catch (e) {
      return JSON.stringify({ unserializable: (e as Error).message, _id: this.docId(doc._id) });
    }
  }
}
