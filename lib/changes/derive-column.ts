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
import { ChangeInputError, ident, objectName, qualified, resolveTable, tableLabel, type TableName } from '../postgres/identifiers.js';
import { createDeriveSync, dropTrigger } from '../postgres/triggers.js';
import { checkFlagName } from '../flags/names.js';
import { checkExpression, checkType } from './common.js';
import { lockStep, rebuildOriginals, refuseOnPartitioned } from './column-replacement.js';
import { refuseSyncTriggerBefore13 } from './partitioned.js';
import { checkOptions, NAME, NAMES, ON_CONVERSION_ERROR, READ_FLAG, SQL, TABLE, TYPE, type ChangeSchema, type OptionsOf } from './options.js';

export const deriveColumnSchema = {
  'x-change': 'deriveColumn',
  'x-template': 'derive-column',
  description: "Adds a column computed from others (e.g. full_name from first_name and last_name), kept in sync both ways by a trigger while both versions run; contract may drop the sources.",
  'x-notes': ["up: the new column from the old ones, SQL over the source columns", "down: for each source column, SQL computing it from the new column (the new version writes only the new one)", "dropSources: contract drops the source columns (archived until purge; down restores them)"],
  type: 'object',
  additionalProperties: false,
  required: ["table", "column", "from", "up"],
  properties: {
    table: { ...TABLE, default: 'my_table', 'x-cli': '--table', description: 'the table' },
    column: { type: 'object', additionalProperties: false, required: ["name", "type"], default: {}, properties: {
      name: { ...NAME, default: 'new_column', 'x-cli': '--column', description: "the derived column's name" },
      type: { ...TYPE, default: 'text', 'x-cli': '--type', description: 'its PostgreSQL type' },
    } },
    from: { ...NAMES, default: ["source_column"], 'x-cli': '--from', description: 'the source columns (repeat the flag or separate with commas)' },
    up: { ...SQL, default: 'source_column', 'x-cli': '--up', description: 'SQL computing the new column from the sources' },
    down: { type: 'object', additionalProperties: SQL, 'x-cli': '--down', description: 'source=SQL over the new column, once per source (repeat the flag)' },
    readFlag: READ_FLAG,
    dropSources: { type: 'boolean', 'x-cli': '--drop-sources', description: 'contract drops the source columns' },
    onConversionError: { ...ON_CONVERSION_ERROR, description: 'a row whose up (or down) fails in the sync trigger: record (default) lets the write through, leaves the derived column NULL and records the row in zero_downtime.conversion_errors (verify reports it, the contract waits); reject fails the write' },
  },
} as const satisfies ChangeSchema;

export type DeriveColumnOptions = OptionsOf<typeof deriveColumnSchema>;

/**
 * A column computed from others — `full_name` from `first_name` and `last_name` — kept in sync both ways while old
 * and new application versions run: a trigger evaluates `up` when a source changes and each `down[source]` when the
 * derived column changes; existing rows are backfilled in batches and verified. Contract drops the trigger, and with
 * `dropSources` archives and drops the sources; down puts them back from the archive (rows unchanged since then get
 * their exact old values, the others `down` of the current value) and re-installs the sync.
 */
export function deriveColumn(options: DeriveColumnOptions): Change {
  checkOptions(deriveColumnSchema, options);
  const c = options.column;
  const name = c.name;
  ident(name);
  const type = checkType(c.type, 'deriveColumn: column.type');
  const from = options.from;
  from.forEach((f) => ident(f));
  if (from.includes(name)) throw new ChangeInputError(`deriveColumn: ${name} cannot be derived from itself`);
  const up = checkExpression(options.up, 'deriveColumn: up');
  let down: Record<string, string> | undefined;
  if (options.down !== undefined) {
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
  const onConversionError = options.onConversionError ?? 'record';
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
      refuseSyncTriggerBefore13(info, 'deriveColumn');
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
        backfill: { table: t, set: [{ column: name, expression: upForBackfill }], quietTrigger: fn, ...(record ? { only: 'null' as const, tryFirst: [{ column: name, expression: up }] } : {}) },
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
      atts.forEach((att, i) => refuseOnPartitioned('deriveColumn', info, [sources[i]!.name], att));
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
            ...rebuildOriginals(t, sources, atts, 'rs', info.partitioning),
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
