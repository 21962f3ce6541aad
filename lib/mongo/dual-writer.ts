import type { Collection, Filter, UpdateFilter } from 'mongodb';
import type { Knex } from 'knex';
import { Db } from '../db/db.js';
import { resolveTable, type TableName } from '../postgres/identifiers.js';
import { liveVersionSql, tombstoneIfAtSql } from './sql.js';
import { loadMongoDriver, type MongoModule } from './driver.js';
import { DualWriteMetrics } from './metrics.js';
import { resolveMove, type MongoDocument, type MongoMove, type MongoToPostgresOptions } from './move.js';
import { PostgresSink } from './sink.js';

export interface DualWriterOptions {
  /** The primary: the collection the application reads and writes today. */
  readonly collection: Collection<MongoDocument>;
  /** The secondary: your Knex instance or a Db. */
  readonly postgres: Knex | Db;
  /** The move (the same options as the migration's mongoToPostgres, or the change itself). */
  readonly move: MongoToPostgresOptions | MongoMove | { readonly move: MongoMove };
  /** Schema of a bare table name. Default `public`. */
  readonly schema?: string;
  readonly stateSchema?: string;
  /** Where pending writes are recorded (a MongoDB collection). Default `zd_outbox_<collection>` in the same database. */
  readonly outbox?: Collection<OutboxEntry>;
  readonly metrics?: DualWriteMetrics;
}

/** One write whose PostgreSQL copy is not confirmed. Written before the primary write, so a crash cannot hide it. */
export interface OutboxEntry {
  readonly _id: unknown;
  readonly move: string;
  /** The document's `_id`. */
  readonly key: unknown;
  readonly op: 'write' | 'delete';
  readonly at: Date;
  /** For a delete whose document version is known: the tombstone's version. */
  readonly version?: bigint;
}

export interface DualWriteResult {
  readonly version: bigint | null;
  /** false when the PostgreSQL copy failed and was left in the outbox for the reconciler. */
  readonly synced: boolean;
}

const isKnex = (k: unknown): k is Knex => typeof k === 'function' && typeof (k as { client?: unknown }).client === 'object';

/** A new document's first version: milliseconds since 1970 × 2^20, so it is above the version of any earlier incarnation. */
export function firstVersion(now = Date.now()): bigint {
  return BigInt(now) << 20n;
}

/**
 * Application-side dual write during the move: MongoDB (the primary) first, then PostgreSQL with the document's
 * version. Every write first records an outbox entry in MongoDB, removed once PostgreSQL has the copy; a failed
 * PostgreSQL write (or a crash in between) leaves the entry, and reconcile() re-syncs it from the document as it is
 * then. Versions: updates `$inc` the document's version field atomically with the change (findOneAndUpdate), a new
 * document starts at firstVersion(), a delete leaves a tombstone one version up; PostgreSQL only ever takes a higher
 * version, so concurrent writers, the backfill and the reconciler can race freely.
 */
export class MongoDualWriter {
  readonly move: MongoMove;
  readonly table: TableName;
  readonly metrics: DualWriteMetrics;
  private readonly db: Db;
  private readonly stateSchema: string;
  private sink: PostgresSink | null = null;
  private bson: MongoModule | null = null;

  constructor(private readonly o: DualWriterOptions) {
    const m = o.move as { move?: MongoMove };
    this.move = resolveMove(m.move ?? (o.move as MongoToPostgresOptions | MongoMove));
    this.table = resolveTable(this.move.table, o.schema ?? 'public');
    this.db = isKnex(o.postgres) ? new Db(o.postgres) : (o.postgres as Db);
    this.stateSchema = o.stateSchema ?? 'zero_downtime';
    this.metrics = o.metrics ?? new DualWriteMetrics();
  }

  get outbox(): Collection<OutboxEntry> {
    return this.o.outbox ?? this.o.collection.db.collection<OutboxEntry>(`zd_outbox_${this.o.collection.collectionName}`);
  }

  private async ready(): Promise<{ sink: PostgresSink; bson: MongoModule }> {
    if (!this.sink || !this.bson) {
      this.bson = await loadMongoDriver();
      this.sink = new PostgresSink(this.move, this.table, this.stateSchema, this.bson);
    }
    return { sink: this.sink, bson: this.bson };
  }

  private get label() {
    return { move: `${this.table.schema}.${this.table.name}` };
  }

  private async note(key: unknown, op: OutboxEntry['op'], version?: bigint): Promise<unknown> {
    const { bson } = await this.ready();
    const _id = new bson.ObjectId();
    await this.outbox.insertOne({ _id, move: this.label.move, key, op, at: new Date(), ...(version !== undefined ? { version } : {}) });
    return _id;
  }

  private async clear(token: unknown): Promise<void> {
    await this.outbox.deleteOne({ _id: token } as Filter<OutboxEntry>);
  }

  /**
   * The document as MongoDB stored it: serialized and read back with the driver's own BSON code, so PostgreSQL gets
   * exactly that (a bigint beyond Int64 is wrapped by the serializer, `undefined` fields dropped, and so on).
   */
  private asStored(bson: MongoModule, doc: MongoDocument): MongoDocument {
    return bson.BSON.deserialize(bson.BSON.serialize(doc), { useBigInt64: true }) as MongoDocument;
  }

  /** Copies a document (or its absence) to PostgreSQL; false if that failed (then a fresh outbox entry keeps it). */
  private async secondary(key: unknown, doc: MongoDocument | null, tombstoneVersion: bigint | null, primaryDoneAt: bigint): Promise<boolean> {
    const { sink } = await this.ready();
    try {
      await this.db.transaction(async (c) => {
        if (doc) await sink.write(c, [doc], 'dual-write');
        else if (tombstoneVersion !== null) {
          const k = sink.mapper.keyOf(key);
          if ('key' in k) await sink.tombstone(c, k.key, tombstoneVersion);
        }
      });
      this.metrics.lag.observe({ ...this.label, via: 'inline' }, Number(process.hrtime.bigint() - primaryDoneAt) / 1e9);
      return true;
    } catch {
      this.metrics.failures.inc(this.label);
      // The original entry may already be taken by a reconciler racing this write: record it again, with what we know.
      await this.note(key, doc ? 'write' : 'delete', tombstoneVersion ?? undefined).catch(() => undefined);
      return false;
    }
  }

  async insert(doc: MongoDocument): Promise<DualWriteResult> {
    const { bson } = await this.ready();
    const full: MongoDocument = { ...doc, _id: doc._id ?? new bson.ObjectId(), [this.move.versionField]: firstVersion() };
    const token = await this.note(full._id, 'write');
    try {
      await this.o.collection.insertOne(full);
    } catch (e) {
      await this.clear(token).catch(() => undefined);
      throw e;
    }
    const at = process.hrtime.bigint();
    const synced = await this.secondary(full._id, this.asStored(bson, full), null, at);
    if (synced) await this.clear(token).catch(() => undefined);
    return { version: full[this.move.versionField] as bigint, synced };
  }

  /** Applies update operators to one document by `_id`, bumping its version in the same atomic update. */
  async update(id: unknown, update: UpdateFilter<MongoDocument>): Promise<DualWriteResult & { document: MongoDocument | null }> {
    const vf = this.move.versionField;
    const inc = { ...((update.$inc as Record<string, unknown> | undefined) ?? {}), [vf]: 1n };
    const token = await this.note(id, 'write');
    let doc: MongoDocument | null;
    try {
      doc = (await this.o.collection.findOneAndUpdate({ _id: id } as Filter<MongoDocument>, { ...update, $inc: inc } as UpdateFilter<MongoDocument>, {
        returnDocument: 'after',
      })) as MongoDocument | null;
    } catch (e) {
      await this.clear(token).catch(() => undefined);
      throw e;
    }
    if (!doc) {
      await this.clear(token).catch(() => undefined);
      return { version: null, synced: true, document: null };
    }
    const at = process.hrtime.bigint();
    const synced = await this.secondary(id, doc, null, at);
    if (synced) await this.clear(token).catch(() => undefined);
    return { version: doc[vf] as bigint, synced, document: doc };
  }

  /**
   * Replaces a document (inserting it if missing), with a version one above the one it replaces. By `_id` alone, as
   * `$set` of the new fields, `$unset` of the ones it drops and `$inc` of the version, in one atomic update: a filter
   * on `_id` and the version would make FerretDB read the whole collection for every replace. A writer that adds a
   * field between our read and our update leaves it in the result; then the replace goes again from what is there
   * (the version rises by one per update) and PostgreSQL gets the final state, once.
   */
  async replace(id: unknown, doc: MongoDocument): Promise<DualWriteResult> {
    const vf = this.move.versionField;
    const { sink } = await this.ready();
    const next: MongoDocument = { ...doc, _id: id };
    delete next[vf];
    const wanted = Object.keys(next).filter((k) => k !== '_id');
    // Outbox entries of updates whose result was a merge with a concurrent writer's fields: their PostgreSQL copy
    // comes with the final state, so they stay until that is written (or for the reconciler, if this call fails).
    const merged: unknown[] = [];
    const clearMerged = async () => {
      for (const t of merged.splice(0)) await this.clear(t).catch(() => undefined);
    };
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = (await this.o.collection.findOne({ _id: id } as Filter<MongoDocument>)) as MongoDocument | null;
      if (!current) {
        try {
          const r = await this.insert(next);
          await clearMerged(); // the re-created document is newer than any merge left behind
          return r;
        } catch (e) {
          if ((e as { code?: number }).code === 11000) continue; // inserted meanwhile: replace it
          throw e;
        }
      }
      const dropped = Object.keys(current).filter((k) => k !== '_id' && k !== vf && !Object.prototype.hasOwnProperty.call(next, k));
      // `$set`/`$unset` read a dotted or `$` name as a path or an operator; such documents keep the guarded replace.
      if ([...wanted, ...dropped].some((k) => k.includes('.') || k.startsWith('$'))) {
        const r = await this.replaceGuarded(id, next, current);
        if (r.synced) await clearMerged();
        return r;
      }
      const set = Object.fromEntries(wanted.map((k) => [k, next[k]]));
      const token = await this.note(id, 'write');
      let after: MongoDocument | null;
      try {
        after = (await this.o.collection.findOneAndUpdate(
          { _id: id } as Filter<MongoDocument>,
          {
            ...(wanted.length > 0 ? { $set: set } : {}),
            ...(dropped.length > 0 ? { $unset: Object.fromEntries(dropped.map((k) => [k, ''])) } : {}),
            $inc: { [vf]: 1n },
          } as UpdateFilter<MongoDocument>,
          { returnDocument: 'after' },
        )) as MongoDocument | null;
      } catch (e) {
        await this.clear(token).catch(() => undefined);
        throw e;
      }
      if (!after) {
        await this.clear(token).catch(() => undefined);
        continue; // deleted in between: insert it again
      }
      if (Object.keys(after).some((k) => k !== '_id' && k !== vf && !Object.prototype.hasOwnProperty.call(next, k))) {
        merged.push(token);
        continue;
      }
      const at = process.hrtime.bigint();
      const synced = await this.secondary(id, after, null, at);
      if (synced) {
        await this.clear(token).catch(() => undefined);
        await clearMerged();
      }
      const v = sink.mapper.versionOf(after);
      return { version: typeof v === 'bigint' ? v : null, synced };
    }
    throw new Error(
      `replace of ${String(id)} kept losing to concurrent writers (20 attempts); MongoDB holds the document as the last of them left it, ` +
        'and reconcile() brings PostgreSQL to it. Write it again once the other writers are done.',
    );
  }

  /** The replace for field names `$set` cannot address: a `replaceOne` guarded by the version read (a scan on FerretDB). */
  private async replaceGuarded(id: unknown, next: MongoDocument, first: MongoDocument): Promise<DualWriteResult> {
    const vf = this.move.versionField;
    const { sink } = await this.ready();
    let current: MongoDocument | null = first;
    for (let attempt = 0; attempt < 20; attempt++) {
      current ??= (await this.o.collection.findOne({ _id: id } as Filter<MongoDocument>, { projection: { [vf]: 1 } })) as MongoDocument | null;
      if (!current) {
        try {
          return await this.insert(next);
        } catch (e) {
          if ((e as { code?: number }).code === 11000) continue;
          throw e;
        }
      }
      const v = sink.mapper.versionOf(current);
      const cur = typeof v === 'bigint' ? v : 0n;
      const full = { ...next, [vf]: cur + 1n };
      const token = await this.note(id, 'write');
      const guard = (current[vf] === undefined ? { _id: id, [vf]: { $exists: false } } : { _id: id, [vf]: current[vf] }) as Filter<MongoDocument>;
      current = null;
      let matched: number;
      try {
        matched = (await this.o.collection.replaceOne(guard, full)).matchedCount;
      } catch (e) {
        await this.clear(token).catch(() => undefined);
        throw e;
      }
      if (matched === 0) {
        await this.clear(token).catch(() => undefined);
        continue; // someone wrote in between: read the new version and try again
      }
      const at = process.hrtime.bigint();
      const synced = await this.secondary(id, this.asStored(this.bson!, full), null, at);
      if (synced) await this.clear(token).catch(() => undefined);
      return { version: cur + 1n, synced };
    }
    throw new Error(`replace of ${String(id)} kept losing to concurrent writers (20 attempts); nothing of this call was written. Write it again once the other writers are done.`);
  }

  /** Deletes a document; PostgreSQL keeps a tombstone one version above the deleted document's. */
  async delete(id: unknown): Promise<DualWriteResult> {
    const { sink } = await this.ready();
    const token = await this.note(id, 'delete');
    let doc: MongoDocument | null;
    try {
      doc = (await this.o.collection.findOneAndDelete({ _id: id } as Filter<MongoDocument>)) as MongoDocument | null;
    } catch (e) {
      await this.clear(token).catch(() => undefined);
      throw e;
    }
    if (!doc) {
      await this.clear(token).catch(() => undefined);
      return { version: null, synced: true };
    }
    const v = sink.mapper.versionOf(doc);
    const tomb = (typeof v === 'bigint' ? v : 0n) + 1n;
    const at = process.hrtime.bigint();
    const synced = await this.secondary(id, null, tomb, at);
    if (synced) await this.clear(token).catch(() => undefined);
    return { version: tomb, synced };
  }

  /**
   * Re-syncs pending writes older than `olderThanMs` from the documents as they are now (or their absence), oldest
   * first; updates the pending gauges. Safe to run from several processes and beside live writers (versions decide).
   */
  async reconcile(opts: { readonly olderThanMs?: number; readonly limit?: number } = {}): Promise<{ applied: number; pending: number; failed: number }> {
    const { sink } = await this.ready();
    const cutoff = Date.now() - (opts.olderThanMs ?? 2000);
    const entries = (await this.pendingEntries())
      .filter((e) => e.at.getTime() < cutoff)
      .sort((a, b) => a.at.getTime() - b.at.getTime())
      .slice(0, opts.limit ?? 1000);
    const byKey = new Map<string, OutboxEntry[]>();
    for (const e of entries) {
      const k = sink.docId(e.key);
      byKey.set(k, [...(byKey.get(k) ?? []), e]);
    }
    let applied = 0;
    let failed = 0;
    for (const list of byKey.values()) {
      const key = list[0]!.key;
      try {
        const k = sink.mapper.keyOf(key);
        // The version PostgreSQL holds *before* MongoDB is asked: if the document is absent there, only that version
        // may be buried. A writer that re-creates the document after our look writes a newer one, which must stand.
        const seen = 'key' in k ? ((await this.db.query<{ v: string }>(liveVersionSql(this.table, this.move.key.column, this.move.key.type), [k.key])).rows[0]?.v ?? null) : null;
        const doc = (await this.o.collection.findOne({ _id: key } as Filter<MongoDocument>)) as MongoDocument | null;
        await this.db.transaction(async (c) => {
          if (doc) {
            await sink.write(c, [doc], 'reconcile');
            return;
          }
          if (!('key' in k)) return;
          const known = list.map((e) => e.version).filter((v): v is bigint => typeof v === 'bigint');
          if (known.length > 0) await sink.tombstone(c, k.key, known.reduce((a, b) => (a > b ? a : b)));
          else if (seen !== null) await c.query(tombstoneIfAtSql(this.table, this.move.key.column, this.move.key.type), [k.key, seen]);
        });
        await this.outbox.deleteMany({ _id: { $in: list.map((e) => e._id) } } as unknown as Filter<OutboxEntry>);
        for (const e of list) this.metrics.lag.observe({ ...this.label, via: 'reconcile' }, (Date.now() - e.at.getTime()) / 1000);
        applied += list.length;
      } catch {
        failed += list.length;
      }
    }
    const p = await this.refreshPending();
    return { applied, pending: p.count, failed };
  }

  /**
   * This move's outbox entries, in one pass without a filter: FerretDB would read the whole outbox for a filter on
   * `move` or `at`, for a sort and for a count alike, and the outbox only ever holds the writes still pending.
   */
  private async pendingEntries(): Promise<OutboxEntry[]> {
    const out: OutboxEntry[] = [];
    for await (const e of this.outbox.find({})) if (e.move === this.label.move && e.at instanceof Date) out.push(e as OutboxEntry);
    return out;
  }

  /** Pending count and oldest pending age (seconds), also set on the gauges. */
  async refreshPending(): Promise<{ count: number; oldestAgeSeconds: number }> {
    const entries = await this.pendingEntries();
    const count = entries.length;
    const oldest = entries.reduce((m, e) => Math.min(m, e.at.getTime()), Infinity);
    const age = count > 0 ? (Date.now() - oldest) / 1000 : 0;
    this.metrics.pending.set(this.label, count);
    this.metrics.oldestPendingSeconds.set(this.label, age);
    return { count, oldestAgeSeconds: age };
  }
}
