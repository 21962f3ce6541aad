import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { lintFiles, type LintReport } from '../lib/ops/lint.js';

const PRELUDE = `SET lock_timeout = '2s';\nSET statement_timeout = '30s';\n`;

// The partition rules know a table is partitioned only from what the migrations say (no database): these lint
// .sql migrations written to a scratch directory, in order, as `umzug lint` reads a project's migrations.
describe('`umzug lint` on partitioned tables: what the migrations say of them, read in order', function () {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'zd-lint-partitioned-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** Lints the migrations given (name → SQL), in name order; each gets the timeouts set first. */
  const lint = async (migrations: Readonly<Record<string, string>>): Promise<LintReport> => {
    const files = Object.keys(migrations).sort().map((name) => {
      const file = path.join(dir, name);
      writeFileSync(file, PRELUDE + migrations[name]!);
      return file;
    });
    return lintFiles(files, { cwd: dir });
  };
  const rules = (r: LintReport) => r.findings.map((f) => `${f.file}:${f.line} ${f.rule}`);
  const CREATE_EVENTS = `CREATE TABLE events (id bigint, region text, at timestamptz NOT NULL) PARTITION BY RANGE (at);\nCREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\n`;

  it('a table partitioned in an earlier migration: an index built on every partition, CONCURRENTLY refused, ADD UNIQUE / PRIMARY KEY, each with its fix', async () => {
    const r = await lint({
      '001_events.sql': CREATE_EVENTS,
      '002_index.sql': `CREATE INDEX events_region ON events (region);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS events_at ON public.events (at);\n`,
      '003_keys.sql': `ALTER TABLE events ADD CONSTRAINT events_id_at_key UNIQUE (id, at);\nALTER TABLE events ADD PRIMARY KEY (id, at);\nALTER TABLE events ADD CONSTRAINT events_u2 UNIQUE USING INDEX events_u2_idx;\n`,
    });
    // The first migration creates the table and its partition: new, nothing to lock.
    expect(rules(r)).to.deep.equal([
      '002_index.sql:3 require-concurrent-index-creation',
      '002_index.sql:3 building-index-on-partitioned-table',
      '002_index.sql:4 refused-on-partitioned-table',
      '003_keys.sql:3 disallowed-unique-constraint',
      '003_keys.sql:3 adding-unique-on-partitioned-table',
      '003_keys.sql:4 adding-primary-key-constraint',
      '003_keys.sql:4 adding-unique-on-partitioned-table',
      '003_keys.sql:5 refused-on-partitioned-table',
    ]);
    const fix = (rule: string, line: number) => r.findings.find((f) => f.rule === rule && f.line === line)!.fix;
    expect(fix('building-index-on-partitioned-table', 3)).to.match(/^addIndex\(\{ table: 'events', columns: \['region'\] \}\): CREATE INDEX … ON ONLY events, each partition's index CONCURRENTLY/);
    expect(fix('refused-on-partitioned-table', 4)).to.match(/^addIndex\(\{ table: 'public\.events', columns: \['at'\] \}\)/);
    expect(fix('adding-unique-on-partitioned-table', 3)).to.match(/^addUnique\(\{ table: 'events', columns: \['id', 'at'\] \}\): each partition's unique index CONCURRENTLY/);
    expect(fix('adding-unique-on-partitioned-table', 4)).to.match(/PRIMARY KEY USING INDEX; then ALTER TABLE events ADD PRIMARY KEY \(id, at\), which adopts them/);
    expect(r.findings.find((f) => f.rule === 'refused-on-partitioned-table' && f.line === 5)!.message).to.equal('adds a unique constraint USING INDEX events_u2_idx on the partitioned table events');
    expect(r.findings.every((f) => f.why.length > 40)).to.equal(true);
  });

  it('a table not known to be partitioned gets none of the partition rules (they can miss one, never invent one)', async () => {
    const r = await lint({ '001.sql': `CREATE INDEX CONCURRENTLY IF NOT EXISTS events_at ON events (at);\nALTER TABLE events ADD CONSTRAINT k UNIQUE (id);\nCREATE INDEX events_r ON ONLY events (region);\n` });
    // ON ONLY a plain table builds the index as usual: still flagged.
    expect(r.findings.map((f) => f.rule)).to.deep.equal(['disallowed-unique-constraint', 'require-concurrent-index-creation']);
  });

  it('the route each fix names passes: ON ONLY, each partition CONCURRENTLY, ATTACH; a partition made LIKE the table and attached', async () => {
    const r = await lint({
      '001_events.sql': CREATE_EVENTS,
      '002_route.sql':
        `CREATE INDEX IF NOT EXISTS events_at ON ONLY events (at);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS events_2024_at ON events_2024 (at);\nALTER INDEX events_at ATTACH PARTITION events_2024_at;\n` +
        `CREATE TABLE events_2025 (LIKE events INCLUDING ALL);\nALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\n`,
    });
    expect(rules(r)).to.deep.equal([]);
  });

  it('within one migration: a table it partitions is new (no locking findings), but CONCURRENTLY is refused on it all the same', async () => {
    const r = await lint({ '001.sql': `${CREATE_EVENTS}CREATE INDEX events_r ON events (region);\nCREATE INDEX CONCURRENTLY events_at ON events (at);\n` });
    expect(rules(r)).to.deep.equal(['001.sql:6 refused-on-partitioned-table']);
  });

  it('CREATE TABLE … PARTITION OF a live table: ACCESS EXCLUSIVE on it, and the scan of a DEFAULT partition the migrations made', async () => {
    const r = await lint({
      '001_events.sql': `${CREATE_EVENTS}CREATE TABLE events_other PARTITION OF events DEFAULT;\n`,
      '002_2025.sql': `CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') WITH (fillfactor = 90);\n`,
      '003_sub.sql': `CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (region);\n`,
      // A partition that is itself partitioned is known as one: the index is built on each of its partitions.
      '004_index.sql': `CREATE INDEX events_2026_at ON events_2026 (at);\n`,
    });
    expect(rules(r)).to.deep.equal(['002_2025.sql:3 creating-partition', '003_sub.sql:3 creating-partition', '004_index.sql:3 require-concurrent-index-creation', '004_index.sql:3 building-index-on-partitioned-table']);
    const f = r.findings[0]!;
    expect(f.table).to.equal('events');
    expect(f.message).to.equal('creates events_2025 as a partition of events: ACCESS EXCLUSIVE on events, and scans its DEFAULT partition events_other under ACCESS EXCLUSIVE');
    expect(f.fix).to.match(/^CREATE TABLE events_2025 \(LIKE events INCLUDING ALL\); then ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM \('2025-01-01'\) TO \('2026-01-01'\) \(SHARE UPDATE EXCLUSIVE on events/);
    expect(f.fix).to.include('a validated CHECK on events_other that excludes the new range');
  });

  it('ATTACH PARTITION: quiet for a table this migration made, or one a validated CHECK proves; a DEFAULT partition is scanned unless its own CHECK excludes the range', async () => {
    const attach = `ALTER TABLE events ATTACH PARTITION events_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');\n`;
    const r = await lint({
      '001_events.sql': CREATE_EVENTS,
      // events_2023: a table from an earlier release, with rows.
      '002_old.sql': attach,
      '003_notvalid.sql': `ALTER TABLE events_2023 ADD CONSTRAINT b CHECK (at IS NOT NULL AND at < '2024-01-01') NOT VALID;\n${attach}`,
      '004_validated.sql': `ALTER TABLE events_2023 ADD CONSTRAINT b CHECK (at IS NOT NULL AND at < '2024-01-01') NOT VALID;\nALTER TABLE events_2023 VALIDATE CONSTRAINT b;\n${attach}`,
      '005_default.sql': `ALTER TABLE events ATTACH PARTITION events_rest DEFAULT;\n`,
      '006_new.sql': `CREATE TABLE events_2025 (LIKE events INCLUDING ALL);\nALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\n`,
      '007_new_excluded.sql': `ALTER TABLE events_rest ADD CONSTRAINT not_2026 CHECK (at < '2026-01-01' OR at >= '2027-01-01') NOT VALID;\nALTER TABLE events_rest VALIDATE CONSTRAINT not_2026;\nCREATE TABLE events_2026 (LIKE events INCLUDING ALL);\nALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');\n`,
    });
    expect(rules(r)).to.deep.equal(['002_old.sql:3 attaching-partition-without-check', '003_notvalid.sql:4 attaching-partition-without-check', '005_default.sql:3 attaching-partition-without-check', '006_new.sql:4 attaching-partition-without-check']);
    const at = (file: string) => r.findings.find((f) => f.file === file)!;
    expect(at('002_old.sql').message).to.equal('attaches events_2023 to events, scanning events_2023 under ACCESS EXCLUSIVE: no validated CHECK on it earlier in this migration proves the bound');
    expect(at('002_old.sql').fix).to.match(/^ALTER TABLE events_2023 ADD CONSTRAINT events_2023_bound CHECK \(.*\) NOT VALID; ALTER TABLE events_2023 VALIDATE CONSTRAINT events_2023_bound \(a scan under SHARE UPDATE EXCLUSIVE/);
    expect(at('006_new.sql').message).to.equal('attaches events_2025 to events, scanning events_rest under ACCESS EXCLUSIVE: no validated CHECK on it earlier in this migration proves the bound');
  });

  it('DROP and RENAME: a dropped table is forgotten, a renamed one known by its new name', async () => {
    const r = await lint({
      '001_events.sql': CREATE_EVENTS,
      '002_rename.sql': `-- umzug-zero-downtime: allow renaming-table because nothing uses it yet\nALTER TABLE events RENAME TO happenings;\n`,
      '003_index.sql': `CREATE INDEX CONCURRENTLY IF NOT EXISTS e ON events (at);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS h ON happenings (at);\n`,
      '004_drop.sql': `-- umzug-zero-downtime: allow dropping-table because it was a mistake\nDROP TABLE happenings;\n`,
      '005_index.sql': `CREATE INDEX CONCURRENTLY IF NOT EXISTS h ON happenings (at);\n`,
    });
    expect(rules(r).filter((x) => !/renaming-table|dropping-table|require-timeout/.test(x))).to.deep.equal(['003_index.sql:4 refused-on-partitioned-table']);
  });
});
