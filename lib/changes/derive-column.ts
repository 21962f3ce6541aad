import type { Change, ChangeDescription, PhasePlan, ResolveContext, Step } from '../migration.js';
import { createTryFunction, dropTryFunction, guardedExpression, recordConversionError, tryCall } from '../postgres/conversion-errors.js';
import { columnInfo, tableInfo, type ColumnInfo } from '../postgres/catalog.js';
import * as ddl from '../postgres/ddl.js';
import {
  abandonArchiveFill,
  analyzeArchive,
  archiveFill,
  archiveJoin,
  archiveName,
  archivedValueJoined,
  archivedWhereJoined,
  dropArchive,
  ensureArchive,
  finishArchiveFill,
  restoreColumnLike,
  startArchiveFill,
  valueCol,
  type ArchiveSpec,
} from '../postgres/archive.js';
import { columnAttachments, lockTables, refuseUncarriedDependents, type ColumnAttachments } from '../postgres/column-attachments.js';
import { ChangeInputError, ident, objectName, qualified, resolveTable, tableLabel, type TableInput, type TableName } from '../postgres/identifiers.js';
import { createDeriveSync, dropTrigger } from '../postgres/triggers.js';
import { checkFlagName } from '../flags/names.js';
import { checkExpression, checkName, checkNames, checkOnConversionError, checkType } from './common.js';
import { lockStep, rebuildOriginals } from './column-replacement.js';

export interface DeriveColumnOptions {
  readonly table: TableInput;
  readonly column: { readonly name: string; readonly type: string };
  /** The source columns the new one is computed from. */
  readonly from: readonly string[];
  /** New from old: a SQL expression over the row's columns, e.g. `first_name || ' ' || last_name`. */
  readonly up: string;
  /**
   * Old from new, one expression per source over the row's columns (the new column included), e.g.
   * `{ first_name: "split_part(full_name, ' ', 1)", last_name: "substr(full_name, strpos(full_name, ' ') + 1)" }`.
   * With it, the new version may write the new column and the old version still sees its sources change. Without
   * it the new column is derived one way only: it is recomputed on every write, and the sources cannot be dropped.
   */
  readonly down?: Readonly<Record<string, string>>;
  /** Contract drops the sources (archived first, so down restores them). Needs `down`. */
  readonly dropSources?: boolean;
  /** Read-cutover flag: the contract waits until it has been at 100 % for the safety window (see lib/flags). */
  readonly readFlag?: string;
  /**
   * What the sync trigger does with a row whose `up` (or `down`) fails: 'record' (default) lets the write through,
   * leaves the derived column NULL (a failed `down` leaves the sources as written) and records the row's key and error
   * in `<stateSchema>.conversion_errors`; verify reports those rows and the contract waits until they are fixed.
   * 'reject': the trigger raises and the application's write fails. Either way the expand first checks `up` on every
   * existing row (preflight) and refuses, changing nothing, if any fails.
   */
  readonly onConversionError?: 'record' | 'reject';
}

/**
 * A column computed from others — `full_name` from `first_name` and `last_name` — kept in sync both ways while old
 * and new application versions run: a trigger evaluates `up` when a source changes and each `down[source]` when the
 * derived column changes; existing rows are backfilled in batches and verified. Contract drops the trigger, and with
 * `dropSources` archives and drops the sources; down puts them back from the archive (rows unchanged since then get
 * their exact old values, the others `down` of the current value) and re-installs the sync.
 */
export function deriveColumn(options: DeriveColumnOptions): Change {
  const c = options?.column;
  if (!c || typeof c !== 'object') throw new ChangeInputError('deriveColumn: `column` must be { name, type }');
  const name = checkName(c.name, 'deriveColumn: column.name');
  ident(name);
  const type = checkType(c.type, 'deriveColumn: column.type');
  const from = checkNames(options.from, 'deriveColumn: from');
  from.forEach((f) => ident(f));
  if (from.includes(name)) throw new ChangeInputError(`deriveColumn: ${name} cannot be derived from itself`);
  const up = checkExpression(options.up, 'deriveColumn: up');
  let down: Record<string, string> | undefined;
  if (options.down !== undefined) {
    if (typeof options.down !== 'object' || options.down === null) throw new ChangeInputError('deriveColumn: down must be an object { <source column>: <expression> }');
    const keys = Object.keys(options.down).sort();
    if (keys.join('\u0000') !== [...from].sort().join('\u0000')) {
      throw new ChangeInputError(`deriveColumn: down must give one expression for each source column ${JSON.stringify(from)}, got ${JSON.stringify(keys)}`);
    }
    down = Object.fromEntries(from.map((f) => [f, checkExpression(options.down![f], `deriveColumn: down.${f}`)]));
  }
  const dropSources = options.dropSources === true;
  if (dropSources && !down) {
    throw new ChangeInputError(
      `deriveColumn: dropSources needs down expressions. Without them ${name} is derived one way only: the old version's columns ${from.join(', ')} ` +
        'could not be kept up to date from the new one while both versions run, nor restored by down. Give `down` for each source, or keep the sources.',
    );
  }
  const readFlag = options.readFlag === undefined ? undefined : checkFlagName(options.readFlag, 'deriveColumn: readFlag');
  const onConversionError = checkOnConversionError(options.onConversionError, 'deriveColumn');
  const table = (ctx: ResolveContext): TableName => resolveTable(options.table, ctx.defaultSchema);
  return {
    kind: 'deriveColumn',
    tables: (ctx) => [table(ctx)],
    preconditions: (ctx) => [
      { kind: 'table-exists', table: table(ctx) },
      { kind: 'has-primary-key', table: table(ctx) },
      ...from.map((f) => ({ kind: 'column-exists' as const, table: table(ctx), column: f })),
      { kind: 'column-absent', table: table(ctx), column: name },
    ],
    describe: (catalog, ctx): ChangeDescription => {
      const t = table(ctx);
      const stateSchema = ctx.stateSchema ?? 'zero_downtime';
      const info = tableInfo(catalog, t);
      if (!info) throw new ChangeInputError(`deriveColumn: table ${tableLabel(t)} does not exist`);
      const sources: ColumnInfo[] = from.map((f) => {
        const col = columnInfo(catalog, t, f);
        if (!col) throw new ChangeInputError(`deriveColumn: column ${JSON.stringify(f)} does not exist in ${tableLabel(t)}`);
        return col;
      });
      const fn = objectName('zd_derive', t.name, name);
      const columns = info.columns.map((x) => x.name);
      const record = onConversionError === 'record';
      const onError = record ? { record: recordConversionError(stateSchema, t, name, info.primaryKey) } : undefined;
      // See createTryFunction: the backfill converts through it, and it records a row it cannot convert.
      const tryFn = objectName('zd_try', t.name, name);
      const sync = [
        ...createDeriveSync(t, fn, fn, { column: name, sources: from, columns, up, ...(down ? { down } : {}) }, onError),
        ...(record ? [createTryFunction(stateSchema, t, tryFn, { param: null, paramType: qualified(t), resultType: type, expression: up, target: name })] : []),
      ];
      const dropSync = [...dropTrigger(t, fn, fn), ...(record ? [dropTryFunction(t, tryFn, qualified(t))] : [])];
      const label = `${tableLabel(t)}.${name}`;
      // The backfill and verify pass over rows they cannot convert (recorded), so one bad row written meanwhile does
      // not stop them; verify reads one snapshot, where a row and its record appear together.
      const upGuarded = record ? guardedExpression(up, stateSchema, t, name, info.primaryKey) : up;
      const upForBackfill = record ? tryCall(t, tryFn, null, info.primaryKey) : up;
      const expand: PhasePlan = {
        preflight: [
          {
            table: t,
            expression: `CAST((${up}) AS ${type})`,
            what: `deriveColumn ${label}: ${up}`,
            fix: 'make `up` handle them (e.g. NULLIF, a CASE that tests the value first), or clean those rows, then run up again',
          },
        ],
        ...(record ? { conversionLog: { table: t, target: name, expression: up } } : {}),
        steps: [lockStep('add-column-and-sync', `add ${name} ${type} with a sync trigger from ${from.join(', ')}`, [ddl.addColumn(t, name, type), ...sync])],
        // In record mode only rows still NULL: the try function then runs once per row (in SET), not twice (WHERE too).
        backfill: { table: t, set: [{ column: name, expression: upForBackfill }], ...(record ? { only: 'null' as const } : {}) },
        verify: { table: t, equal: [{ column: name, expression: upGuarded }] },
      };
      const undoExpand = { steps: [lockStep('drop-column', `drop the sync trigger and ${name}`, [...dropSync, ddl.dropColumnIfExists(t, name)])] };
      const summary = `derive ${label} ${type} from ${from.join(', ')}${dropSources ? ` (contract drops ${from.join(', ')})` : ''}`;
      const flag = readFlag ? { readFlag } : {};
      if (!dropSources) {
        return {
          summary,
          ...flag,
          expand,
          contract: { steps: [lockStep('drop-sync', 'drop the sync trigger', dropSync)] },
          undoContract: {
            steps: [lockStep('restore-sync', 'install the sync trigger again', sync)],
            // While contracted nothing kept the two sides equal: the sources follow the derived column where they can.
            backfill: down
              ? { table: t, set: from.map((f) => ({ column: f, expression: down![f]! })) }
              : { table: t, set: [{ column: name, expression: up }] },
            verify: { table: t, equal: [{ column: name, expression: up }] },
          },
          undoExpand,
        };
      }
      const refuse: string[] = [];
      const atts: ColumnAttachments[] = sources.map((s) => {
        if (info.primaryKey.includes(s.name)) refuse.push(`${s.name} is part of the primary key`);
        if (s.identity || s.generated) refuse.push(`${s.name} is an identity or generated column`);
        if (s.default?.includes('nextval(')) refuse.push(`${s.name} owns the sequence behind its default`);
        const att = columnAttachments(info, s, 'deriveColumn');
        if (att.incoming.length) refuse.push(`${s.name} is referenced by the foreign keys ${att.incoming.map((f) => f.name).join(', ')}`);
        return att;
      });
      if (refuse.length) throw new ChangeInputError(`deriveColumn: cannot drop the sources of ${label}: ${refuse.join('; ')}. Nothing was changed. Keep the sources (dropSources: false) or change them first.`);
      const archive: ArchiveSpec = {
        archive: archiveName(stateSchema, 'derive', t, ...from),
        table: t,
        keys: info.primaryKey.map((k) => ({ name: k, type: info.columns.find((x) => x.name === k)!.type })),
        values: sources.map((s) => ({ name: s.name, type: s.type })),
        kind: 'derive-sources',
      };
      const known = (att: ColumnAttachments) => ({
        indexes: atts.flatMap((a) => a.indexes.map((i) => i.name)),
        constraints: atts.flatMap((a) => [...a.indexes.flatMap((i) => (i.constraint ? [i.constraint.name] : [])), ...a.constraints.map((x) => x.name)]).concat(att.constraints.map((x) => x.name)),
      });
      // up over the archived sources (other columns of the row as they are now): was the row left alone since?
      const upOfArchived = `(SELECT ${up} FROM (SELECT ${sources.map((s, i) => `_zd_a.${valueCol(i)} AS ${ident(s.name)}`).join(', ')}) AS _zd_row)`;
      const unchanged = archivedWhereJoined(`${ident(name)} IS NOT DISTINCT FROM ${upOfArchived}`);
      const restoreDefaults: Step[] = sources.some((s) => s.default != null)
        ? [lockStep('restore-defaults', 'restore the defaults of the sources', sources.flatMap((s) => (s.default != null ? [ddl.setDefault(t, s.name, s.default)] : [])))]
        : [];
      return {
        summary,
        ...flag,
        expand,
        contract: {
          steps: [lockStep('archive-start', `create the archive ${tableLabel(archive.archive)} of ${from.join(', ')} and the trigger that keeps it current`, startArchiveFill(archive, stateSchema))],
          backfill: archiveFill(archive),
          afterBackfill: [
            lockStep('archive-analyze', `analyze ${tableLabel(archive.archive)} (its row count for purge)`, [analyzeArchive(archive)]),
            lockStep('drop-sources', `drop the sync trigger and ${from.join(', ')}, ending the archive's trigger under the same lock`, [
              lockTables([t]),
              ...finishArchiveFill(archive, stateSchema),
              ...dropSync,
              ...sources.map((s, i) => refuseUncarriedDependents(t, s.name, known(atts[i]!), 'deriveColumn', { allowSequences: false, requirePlainTable: false })),
              ...from.map((f) => ddl.dropColumnIfExists(t, f)),
            ]),
          ],
        },
        undoContract: {
          steps: [
            lockStep('restore-sources', `add ${from.join(', ')} back, kept in sync with ${name}`, [
              ...ensureArchive(archive, stateSchema),
              ...sources.map((_s, i) => restoreColumnLike(archive, stateSchema, i)),
              ...sync,
            ]),
          ],
          backfill: {
            table: t,
            set: sources.map((s, i) => ({ column: s.name, expression: `CASE WHEN ${unchanged} THEN ${archivedValueJoined(i)} ELSE (${down![s.name]}) END` })),
            join: archiveJoin(archive),
          },
          afterBackfill: [
            ...restoreDefaults,
            ...rebuildOriginals(t, sources, atts, 'rs'),
            lockStep('drop-archive', `drop the archive ${tableLabel(archive.archive)}`, dropArchive(archive, stateSchema)),
          ],
          verify: { table: t, equal: [{ column: name, expression: up }] },
        },
        undoExpand: {
          // A contract that failed while filling the archive left its trigger (and a partial archive) behind.
          steps: [lockStep('abandon-archive', `drop the archive trigger of ${from.join(', ')} and an unfinished archive, if a contract left them`, abandonArchiveFill(archive, stateSchema)), ...undoExpand.steps],
        },
      };
    },
  };
}
