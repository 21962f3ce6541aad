import { expect } from 'chai';
import type { Db } from '../../lib/db/db.js';
import { dataChecksums, diffChecksums, diffSnapshots, schemaSnapshot, type SchemaSnapshot, type TableChecksum } from '../../lib/postgres/snapshot.js';

/** What a round trip must give back: the schema snapshot and the per-table data checksums of some schemas. */
export interface DbState {
  readonly schema: SchemaSnapshot;
  readonly data: Record<string, TableChecksum>;
}

/** The schema snapshot and the data checksums of `schemas`, read on one connection. */
export function takeState(db: Db, schemas: readonly string[]): Promise<DbState> {
  return db.withConnection(async (c) => ({ schema: await schemaSnapshot(c, schemas), data: await dataChecksums(c, schemas) }));
}

/** No difference in the schema and none in the data; a failure lists the differing objects and tables. */
export function expectSameState(expected: DbState, actual: DbState, label = 'state'): void {
  expect(diffSnapshots(expected.schema, actual.schema), `${label}: schema differs`).to.deep.equal([]);
  expect(diffChecksums(expected.data, actual.data), `${label}: data differs`).to.deep.equal([]);
}

export interface RoundTrip {
  readonly before: DbState;
  readonly contracted: DbState;
  readonly reverted: DbState;
  readonly again: DbState;
}

/**
 * The round trip of a migration with an expand and a contract: state → up → up (contracted) → down → down, which must
 * give back the state it started from exactly → up → up, which must give back the contracted state exactly.
 * `contracted` runs on the contracted state before the downs, `reverted` after the downs (once the state is compared).
 */
export async function expectExactRoundTrip(
  umzug: { up(): Promise<unknown>; down(): Promise<unknown> },
  take: () => Promise<DbState>,
  checks: { contracted?: (state: DbState, before: DbState) => unknown; reverted?: (state: DbState) => unknown } = {},
): Promise<RoundTrip> {
  const before = await take();
  await umzug.up();
  await umzug.up();
  const contracted = await take();
  await checks.contracted?.(contracted, before);
  await umzug.down();
  await umzug.down();
  const reverted = await take();
  expectSameState(before, reverted, 'up → up → down → down');
  await checks.reverted?.(reverted);
  await umzug.up();
  await umzug.up();
  const again = await take();
  expectSameState(contracted, again, 'up → up again after down → down');
  return { before, contracted, reverted, again };
}
