import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { glob } from 'tinyglobby';
import { Umzug } from 'umzug';
import type { Project } from './project.js';
import { ZeroDowntimeError, type ZeroDowntimeErrorCode } from '../db/errors.js';
import { CHANGE_CONSTRUCTORS, CHANGE_SCHEMAS } from '../changes/registry.js';
import type { ChangeSchema } from '../changes/options.js';

/** What `create --template` writes: one change of this kind, with these (already validated) options. */
export interface TemplateRequest {
  readonly template: string;
  /** Options of the change, validated, with placeholders filled in where options were missing. */
  readonly params: Record<string, unknown>;
  /** Option paths that hold placeholders (marked TODO in the file). */
  readonly placeholders: readonly (readonly string[])[];
}

/** A template: the JSON Schema of a change's options that names a template (`x-template`); see changes/options.ts. */
export type TemplateSchema = ChangeSchema & { readonly 'x-template': string };

interface SchemaNode {
  readonly type?: string | readonly string[];
  readonly properties?: Record<string, SchemaNode>;
  readonly items?: SchemaNode | readonly SchemaNode[];
  readonly anyOf?: readonly SchemaNode[];
  readonly additionalProperties?: boolean | SchemaNode;
  readonly description?: string;
  readonly default?: unknown;
  readonly 'x-cli'?: string;
  readonly 'x-sql'?: boolean;
  readonly 'x-negate'?: boolean;
}

/** A leaf of a template's schema that a command-line flag sets. */
export interface TemplateFlag {
  readonly flag: string;
  readonly path: readonly string[];
  readonly kind: 'string' | 'array' | 'record' | 'boolean' | 'scalar';
  readonly negate: boolean;
  readonly description: string;
}

export class TemplateError extends ZeroDowntimeError {
  readonly code: ZeroDowntimeErrorCode = 'template';
  override name = 'TemplateError';
}

const PACKAGE_NAME = 'umzug-zero-downtime';

let cache: Map<string, TemplateSchema> | null = null;

/** Every template by name, each the JSON Schema of its change's options (the change's own, in lib/changes/). */
export function loadTemplates(): Map<string, TemplateSchema> {
  if (cache) return cache;
  const out = new Map<string, TemplateSchema>();
  const withTemplate = CHANGE_SCHEMAS.filter((s): s is TemplateSchema => typeof s['x-template'] === 'string');
  for (const schema of withTemplate.sort((a, b) => a['x-template'].localeCompare(b['x-template']))) out.set(schema['x-template'], schema);
  cache = out;
  return out;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true });
ajv.addVocabulary(['x-change', 'x-template', 'x-notes', 'x-cli', 'x-sql', 'x-negate']);
const validators = new Map<string, ValidateFunction>();

function validatorFor(name: string, schema: TemplateSchema): ValidateFunction {
  let v = validators.get(name);
  if (!v) {
    v = ajv.compile(schema);
    validators.set(name, v);
  }
  return v;
}

/** The branch of an `anyOf` (a table: a name or { schema, name }; SQL: one statement or a list) a value takes. */
function branch(node: SchemaNode | undefined, kind: 'string' | 'array' | 'object'): SchemaNode | undefined {
  if (!node?.anyOf) return node;
  return node.anyOf.find((b) => b.type === kind) ?? node;
}

function itemsOf(node: SchemaNode | undefined, index = 0): SchemaNode | undefined {
  const items = branch(node, 'array')?.items;
  return Array.isArray(items) ? (items as readonly SchemaNode[])[index] : (items as SchemaNode | undefined);
}

/** A schema's properties as the nodes this module reads (a ChangeSchema leaves them untyped). */
const propertiesOf = (schema: ChangeSchema): Record<string, SchemaNode> => schema.properties as Record<string, SchemaNode>;

function kindOf(node: SchemaNode): TemplateFlag['kind'] {
  // A flag that may be repeated fills the list branch of an anyOf; otherwise the first branch decides.
  if (node.anyOf) return node.anyOf.some((b) => b.type === 'array') ? 'array' : kindOf(node.anyOf[0]!);
  if (node.type === 'array') return 'array';
  if (node.type === 'boolean') return 'boolean';
  if (node.type === 'object') return 'record';
  if (node.type === 'string') return 'string';
  return 'scalar';
}

/** The flags a template takes, with the option path each one sets. */
export function templateFlags(schema: TemplateSchema): TemplateFlag[] {
  const out: TemplateFlag[] = [];
  const walk = (props: Record<string, SchemaNode>, prefix: string[]) => {
    for (const [key, node] of Object.entries(props)) {
      const p = [...prefix, key];
      if (node['x-cli']) out.push({ flag: node['x-cli'], path: p, kind: kindOf(node), negate: node['x-negate'] === true, description: node.description ?? '' });
      else if (node.properties) walk(node.properties, p);
    }
  };
  walk(propertiesOf(schema), []);
  return out;
}

function nodeAt(schema: TemplateSchema, p: readonly string[]): SchemaNode | undefined {
  let node: SchemaNode | undefined = { properties: propertiesOf(schema) };
  for (const k of p) {
    if (!node) return undefined;
    if (node.properties?.[k]) node = node.properties[k];
    else if (/^\d+$/.test(k) && itemsOf(node, Number(k))) node = itemsOf(node, Number(k));
    else if (node.additionalProperties && typeof node.additionalProperties === 'object') node = node.additionalProperties;
    else return undefined;
  }
  return node;
}

/** Raw values from the command line: flag name → the strings given (flags given without a value: ['true']). */
export type RawFlags = ReadonlyMap<string, readonly string[]>;

/**
 * Turns command-line values into the change's options: lists from repeated flags or commas, `key=value` pairs for
 * records, booleans from flags. `--params` JSON is merged under the flags. Then the template's JSON Schema checks
 * everything and fills placeholders; an error names the flag and the option.
 */
export function templateParams(name: string, flags: RawFlags, json?: string): { params: Record<string, unknown>; placeholders: string[][] } {
  const templates = loadTemplates();
  const schema = templates.get(name);
  if (!schema) throw new TemplateError(`unknown template "${name}" (known: ${[...templates.keys()].join(', ')})`);
  const known = templateFlags(schema);
  const byFlag = new Map(known.map((f) => [f.flag, f]));
  for (const flag of flags.keys()) {
    if (!byFlag.has(flag)) {
      throw new TemplateError(`${flag} is not a parameter of template "${name}" (its parameters: ${known.map((f) => f.flag).join(', ')}, --params '<json>')`);
    }
  }
  let params: Record<string, unknown> = {};
  if (json !== undefined) {
    try {
      params = JSON.parse(json) as Record<string, unknown>;
    } catch (e) {
      throw new TemplateError(`--params is not valid JSON: ${(e as Error).message}`);
    }
    if (!params || typeof params !== 'object' || Array.isArray(params)) throw new TemplateError('--params must be a JSON object of the change options');
  }
  for (const f of known) {
    const values = flags.get(f.flag);
    if (!values || values.length === 0) continue;
    let value: unknown;
    switch (f.kind) {
      case 'boolean':
        value = f.negate ? false : true;
        break;
      case 'array': {
        const sql = itemsOf(nodeAt(schema, f.path))?.['x-sql'] === true;
        // SQL may hold commas; names may not, so `--columns a,b` is two columns.
        value = sql ? [...values] : values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
        break;
      }
      case 'record': {
        const rec: Record<string, string> = {};
        for (const v of values) {
          const eq = v.indexOf('=');
          if (eq <= 0) throw new TemplateError(`${f.flag} takes key=value (e.g. ${f.flag} first_name="split_part(full_name, ' ', 1)"), got ${JSON.stringify(v)}`);
          rec[v.slice(0, eq).trim()] = v.slice(eq + 1);
        }
        value = rec;
        break;
      }
      default:
        if (values.length > 1) throw new TemplateError(`${f.flag} was given ${values.length} times; template "${name}" takes one value`);
        value = values[0];
    }
    setPath(params, f.path, value);
  }
  const given = leafPaths(params);
  const validate = validatorFor(name, schema);
  if (!validate(params)) throw new TemplateError(`template "${name}": ${describeErrors(validate.errors ?? [], known)}`);
  const givenSet = new Set(given.map((p) => p.join('.')));
  const placeholders = leafPaths(params).filter((p) => !givenSet.has(p.join('.')) && ![...givenSet].some((g) => g.startsWith(p.join('.') + '.')));
  return { params, placeholders };
}

function setPath(target: Record<string, unknown>, p: readonly string[], value: unknown): void {
  let o = target;
  for (const k of p.slice(0, -1)) {
    if (!o[k] || typeof o[k] !== 'object') o[k] = {};
    o = o[k] as Record<string, unknown>;
  }
  o[p[p.length - 1]!] = value;
}

/** Paths of the leaves (scalars and arrays) of a plain object. */
function leafPaths(o: Record<string, unknown>, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(o)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) out.push(...leafPaths(v as Record<string, unknown>, [...prefix, k]));
    else out.push([...prefix, k]);
  }
  return out;
}

function describeErrors(errors: readonly ErrorObject[], flags: readonly TemplateFlag[]): string {
  const lines = errors.map((e) => {
    const p = e.instancePath.split('/').filter(Boolean);
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      return `${[...p, extra].join('.')} is not an option of this change`;
    }
    if (e.keyword === 'required') p.push((e.params as { missingProperty: string }).missingProperty);
    const flag = flags.find((f) => p.join('.') === f.path.join('.') || p.join('.').startsWith(f.path.join('.') + '.'));
    const field = p.join('.') || '(options)';
    const msg = e.keyword === 'enum' ? `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}` : (e.message ?? 'is invalid');
    return `${flag ? `${flag.flag} (${field})` : field} ${msg}`;
  });
  return [...new Set(lines)].join('; ');
}

// ---- rendering ---------------------------------------------------------------------------------------------------

export type ModuleFormat = 'ts' | 'esm' | 'cjs';

const jsString = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r')}'`;
const sqlString = (s: string) => '`' + s.replace(/\\/g, '\\\\').replace(/`/g, '\\`').replace(/\$\{/g, '\\${') + '`';
const isIdentifierKey = (k: string) => /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k);

function renderValue(value: unknown, node: SchemaNode | undefined, indent: string, todo: (p: string[]) => boolean, p: string[]): string {
  if (typeof value === 'string') return branch(node, 'string')?.['x-sql'] ? sqlString(value) : jsString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) {
    const items = value.map((v, i) => renderValue(v, itemsOf(node, i), indent, todo, [...p, String(i)]));
    const inline = `[${items.join(', ')}]`;
    return inline.length < 70 && !inline.includes('\n') ? inline : `[\n${items.map((x) => `${indent}  ${x},`).join('\n')}\n${indent}]`;
  }
  if (value && typeof value === 'object') {
    node = branch(node, 'object');
    const inner = indent + '  ';
    const lines = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
      const child = node?.properties?.[k] ?? (typeof node?.additionalProperties === 'object' ? node.additionalProperties : undefined);
      const cp = [...p, k];
      const mark = todo(cp) ? ` // TODO: placeholder${child?.['x-cli'] ? ` (${child['x-cli']})` : ''}${child?.description ? `: ${child.description}` : ''}` : '';
      return `${inner}${isIdentifierKey(k) ? k : jsString(k)}: ${renderValue(v, child, inner, todo, cp)},${mark}`;
    });
    return `{\n${lines.join('\n')}\n${indent}}`;
  }
  return 'undefined';
}

/** The migration file for one change, in the project's module format. */
export function renderTemplate(name: string, params: Record<string, unknown>, format: ModuleFormat, placeholders: readonly (readonly string[])[] = []): string {
  const schema = loadTemplates().get(name);
  if (!schema) throw new TemplateError(`unknown template "${name}"`);
  const fn = schema['x-change'];
  const todoSet = new Set(placeholders.map((p) => p.join('.')));
  const call = `${fn}(${renderValue(params, { properties: propertiesOf(schema) }, '    ', (p) => todoSet.has(p.join('.')), [])})`;
  const head = [`// ${name}: ${schema.description}`, ...(schema['x-notes'] ?? []).map((n) => `//   ${n}`)];
  if (todoSet.size > 0) head.push('// A draft: replace the placeholders marked TODO, then delete the `draft` line; until then `umzug up` refuses to run it.');
  const draft = todoSet.size > 0 ? `  draft: ${jsString(`fill in ${[...todoSet].join(', ')}`)},\n` : '';
  const body = `defineMigration({\n${draft}  changes: [\n    ${call},\n  ],\n})`;
  if (format === 'cjs') {
    return `${head.join('\n')}\nconst { defineMigration, ${fn} } = require('${PACKAGE_NAME}');\n\nmodule.exports = ${body};\n`;
  }
  return `${head.join('\n')}\nimport { defineMigration, ${fn} } from '${PACKAGE_NAME}';\n\nexport default ${body};\n`;
}

// ---- where and in which format -------------------------------------------------------------------------------------

const EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'];

/** "module" or "commonjs", from the nearest package.json above `dir`, as Node decides for .js files. */
export function packageType(dir: string): 'module' | 'commonjs' {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const pkg = path.join(d, 'package.json');
    if (existsSync(pkg)) {
      try {
        return (JSON.parse(readFileSync(pkg, 'utf8')) as { type?: string }).type === 'module' ? 'module' : 'commonjs';
      } catch {
        return 'commonjs';
      }
    }
    if (path.dirname(d) === d) return 'commonjs';
  }
}

export function formatOf(file: string): ModuleFormat {
  const ext = path.extname(file);
  if (ext === '.ts' || ext === '.mts' || ext === '.cts') return 'ts';
  if (ext === '.mjs') return 'esm';
  if (ext === '.cjs') return 'cjs';
  return packageType(path.dirname(file)) === 'module' ? 'esm' : 'cjs';
}

/** The extension a new migration gets when --name has none: the newest migration's, else .ts with a tsconfig.json, else .js. */
export async function projectExtension(umzug: Project): Promise<string> {
  const files = (await glob([...umzug.config.migrations], { cwd: umzug.config.cwd, absolute: true })).sort((a, b) => path.basename(a).localeCompare(path.basename(b)));
  const last = files.filter((f) => EXTENSIONS.includes(path.extname(f))).pop();
  if (last) return path.extname(last);
  // No migration yet: the extension the migrations glob asks for (`migrations/*.ts`), else TypeScript where the
  // project has a tsconfig or a TypeScript config file, else JavaScript.
  const fromGlob = umzug.config.migrations.map(globExtension).find((e): e is string => e !== null);
  if (fromGlob) return fromGlob;
  const tsConfigFile = ['umzug.config.ts', 'umzug.config.mts', 'umzug.config.cts', 'tsconfig.json'].some((f) => existsSync(path.join(umzug.config.cwd, f)));
  return tsConfigFile ? '.ts' : '.js';
}

/** The one extension a glob's file part names (`*.ts`, `*.{ts,mts}` → .ts), or null when it names none or several kinds. */
function globExtension(glob: string): string | null {
  const file = glob.split('/').pop() ?? '';
  const brace = /\.\{([^}]*)\}$/.exec(file);
  const exts = brace ? brace[1]!.split(',').map((e) => `.${e.trim()}`) : /\.[a-z]+$/i.test(file) ? [file.slice(file.lastIndexOf('.'))] : [];
  const known = exts.filter((e) => EXTENSIONS.includes(e));
  if (known.length === 0) return null;
  const ts = known.every((e) => /ts$/.test(e));
  const js = known.every((e) => /js$/.test(e));
  return ts || js ? known[0]! : null;
}

/** Knex's migration names: 14 digits of date and time, an underscore, the name (`20240101000000_create_users.js`). */
const KNEX_NAME = /^\d{14}_/;

/**
 * Whether `create` names a new file Knex's way (`20261201151356_add-price`): when most migrations in the folder are
 * named so, or when it has none yet and the project is a Knex project. Umzug's dotted timestamp would sort before
 * every Knex file of the same day (and Umzug then refuses the order), and Knex's CLI would list it out of order.
 */
export function usesKnexNames(plainMigrations: 'umzug' | 'knex', folder: string): boolean {
  const siblings = existsSync(folder) ? readdirSync(folder).filter((f) => EXTENSIONS.includes(path.extname(f)) || path.extname(f) === '.sql') : [];
  if (siblings.length === 0) return plainMigrations === 'knex';
  return siblings.filter((f) => KNEX_NAME.test(f)).length > siblings.length / 2;
}

/** Knex's name for a migration made now: UTC (Knex's own CLI uses local time, so the two agree to the hour only). */
export function knexMigrationName(name: string, now = new Date()): string {
  const d = now.toISOString();
  return `${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}${d.slice(11, 13)}${d.slice(14, 16)}${d.slice(17, 19)}_${name}`;
}

export const requests = new WeakMap<object, TemplateRequest>();

/**
 * Umzug's `create.template`: it receives only the file path, so the template and its options travel beside it
 * (set by `create --template` or createFromTemplate). Without a template it is Umzug's own plain template, in the
 * project's module format.
 */
export async function creationTemplate(umzug: Project, filepath: string): Promise<Array<[string, string]>> {
  let file = filepath;
  if (!EXTENSIONS.includes(path.extname(file)) && path.extname(file) !== '.sql') file += await projectExtension(umzug);
  const request = requests.get(umzug);
  if (!request && umzug.config.plainMigrations === 'knex') return [[file, knexPlainTemplate(formatOf(file))]];
  if (!request) {
    // Public at run time, private in Umzug's typings.
    const plain = (Umzug as unknown as { defaultCreationTemplate(f: string): Array<[string, string]> }).defaultCreationTemplate;
    if (path.extname(file) !== '.js') return plain(file);
    // Umzug picks CommonJS or ESM for .js from how it was itself loaded; the project's package.json is what counts.
    const as = file.replace(/\.js$/, formatOf(file) === 'esm' ? '.mjs' : '.cjs');
    return plain(as).map(([, content]) => [file, content] as [string, string]);
  }
  return [[file, renderTemplate(request.template, request.params, formatOf(file), request.placeholders)]];
}

/** A plain migration in Knex's own shape, for a project whose plain files Knex (and we, knex-style) call with `knex`. */
function knexPlainTemplate(format: ModuleFormat): string {
  const body = '  // knex.schema…, or knex.raw(…)\n';
  if (format === 'cjs') return `/** @param {import('knex').Knex} knex */\nexports.up = async (knex) => {\n${body}};\n\n/** @param {import('knex').Knex} knex */\nexports.down = async (knex) => {\n${body}};\n`;
  if (format === 'esm') return `/** @param {import('knex').Knex} knex */\nexport const up = async (knex) => {\n${body}};\n\n/** @param {import('knex').Knex} knex */\nexport const down = async (knex) => {\n${body}};\n`;
  return `import type { Knex } from 'knex';\n\nexport const up = async (knex: Knex): Promise<void> => {\n${body}};\n\nexport const down = async (knex: Knex): Promise<void> => {\n${body}};\n`;
}

/** Checks options with the change's own constructor, so `create` refuses what `up` would refuse. */
export async function checkWithConstructor(template: string, params: Record<string, unknown>): Promise<void> {
  const fn = loadTemplates().get(template)!['x-change'];
  const ctor: unknown = CHANGE_CONSTRUCTORS[fn];
  if (typeof ctor !== 'function') {
    throw new TemplateError(`template "${template}" needs ${fn}(), which this version of ${PACKAGE_NAME} does not export. Nothing was written.`);
  }
  try {
    (ctor as (o: unknown) => unknown)(params);
  } catch (e) {
    // The constructor names the option ("addColumn: column.type must be …"); the user gave it as a flag.
    let message = (e as Error).message;
    for (const f of templateFlags(loadTemplates().get(template)!)) message = message.replace(`${fn}: ${f.path.join('.')} `, `${f.flag} (${f.path.join('.')}) `);
    throw new TemplateError(`template "${template}": ${message}. Nothing was written.`);
  }
}

/**
 * Refuses to write a file whose required options were not given: `create` never invents a table or a column that
 * `up` would then run. With `draft`, the file is written with its placeholders marked TODO and `draft` set, and
 * `up` refuses to run it until the author fills them in and deletes that line.
 */
export function requireGiven(name: string, placeholders: readonly (readonly string[])[], draft: boolean): void {
  if (placeholders.length === 0 || draft) return;
  const missing = missingParameters(name, placeholders).map((m) => m.flag);
  throw new TemplateError(
    `template "${name}" needs ${missing.join(', ')}, which ${missing.length === 1 ? 'was' : 'were'} not given. Nothing was written. ` +
      `Give ${missing.length === 1 ? 'it' : 'them'} (\`umzug create --template ${name} --help\` lists the parameters), or add --draft to write a draft with TODO placeholders that \`up\` refuses to run until they are filled in.`,
  );
}

/** The required parameters a template was not given, as flags with their descriptions (what a terminal asks for). */
export function missingParameters(name: string, placeholders: readonly (readonly string[])[]): { readonly flag: string; readonly description: string; readonly path: string }[] {
  const flags = new Map(templateFlags(loadTemplates().get(name)!).map((f) => [f.path.join('.'), f]));
  return placeholders.map((p) => {
    const f = flags.get(p.join('.'));
    return { flag: f?.flag ?? p.join('.'), description: f?.description ?? '', path: p.join('.') };
  });
}

export interface CreateFromTemplateOptions {
  readonly name: string;
  readonly template: string;
  /** The change's options; a required one missing is refused, unless `draft`. */
  readonly params?: Record<string, unknown>;
  /** Write missing required options as TODO placeholders, in a draft that `up` refuses to run until they are filled in. */
  readonly draft?: boolean;
  readonly folder?: string;
  readonly prefix?: 'TIMESTAMP' | 'DATE' | 'NONE';
  readonly skipVerify?: boolean;
  readonly allowConfusingOrdering?: boolean;
}

/** Programmatic `create --template`: validated, written through Umzug's create (so it must show up in pending). */
export async function createFromTemplate(umzug: Project, options: CreateFromTemplateOptions): Promise<void> {
  const { params, placeholders } = templateParams(options.template, new Map(), JSON.stringify(options.params ?? {}));
  requireGiven(options.template, placeholders, options.draft === true);
  await checkWithConstructor(options.template, params);
  requests.set(umzug, { template: options.template, params, placeholders });
  try {
    await umzug.create({
      name: options.name,
      ...(options.folder ? { folder: options.folder } : {}),
      ...(options.prefix ? { prefix: options.prefix } : {}),
      ...(options.skipVerify ? { skipVerify: true } : {}),
      ...(options.allowConfusingOrdering ? { allowConfusingOrdering: true } : {}),
    });
  } finally {
    requests.delete(umzug);
  }
}

// ---- the `create` action -----------------------------------------------------------------------------------------

/** Every flag any template takes, defined once on the action (a flag two templates share means the same thing). */
export function allFlags(): Map<string, { kind: 'flag' | 'list'; descriptions: string[]; templates: string[] }> {
  const out = new Map<string, { kind: 'flag' | 'list'; descriptions: string[]; templates: string[] }>();
  for (const [name, schema] of loadTemplates()) {
    for (const f of templateFlags(schema)) {
      const e = out.get(f.flag) ?? { kind: f.kind === 'boolean' ? 'flag' : 'list', descriptions: [], templates: [] };
      if (!e.descriptions.includes(f.description)) e.descriptions.push(f.description);
      e.templates.push(name);
      out.set(f.flag, e);
    }
  }
  return out;
}

// ---- describing the templates (no project, no database) -------------------------------------------------------------

/** `create --list`: every template, the change it writes and what it is for. */
export function formatTemplateList(): string {
  const rows = [...loadTemplates()].map(([name, s]) => `  ${name.padEnd(16)} ${s['x-change']}() — ${s.description}`);
  return `Templates for \`umzug create --name NAME --template <template> …\` (\`--template <template> --help\` lists its parameters):\n${rows.join('\n')}`;
}

/** `create --template NAME --help`: that template's parameters only, with whether each is required and an example. */
export function formatTemplateHelp(name: string): string {
  const schema = loadTemplates().get(name);
  if (!schema) throw new TemplateError(`unknown template "${name}" (known: ${[...loadTemplates().keys()].join(', ')})`);
  const lines = [`usage: umzug create --name NAME --template ${name} [parameters] [--draft] [--json]`, '', `${schema['x-change']}(): ${schema.description}`];
  for (const n of schema['x-notes'] ?? []) lines.push(`  ${n}`);
  lines.push('', 'Parameters:');
  for (const f of templateFlags(schema)) {
    const required = isRequired(schema, f.path);
    const node = nodeAt(schema, f.path);
    const shape = f.kind === 'boolean' ? '' : f.kind === 'array' ? ' VALUE[,VALUE…]' : f.kind === 'record' ? ' KEY=VALUE …' : ' VALUE';
    const example = node?.default !== undefined ? ` (e.g. ${Array.isArray(node.default) ? node.default.join(',') : String(node.default)})` : '';
    lines.push(`  ${`${f.flag}${shape}`.padEnd(32)} ${required ? 'required' : 'optional'}: ${f.description}${example}`);
  }
  lines.push('', `  ${'--params JSON'.padEnd(32)} optional: the options as a JSON object (flags override its keys)`);
  lines.push(`  ${'--draft'.padEnd(32)} optional: write missing required parameters as TODO placeholders in a draft that \`up\` refuses to run`);
  return lines.join('\n');
}

function isRequired(schema: TemplateSchema, p: readonly string[]): boolean {
  let node: SchemaNode | undefined = { properties: schema.properties, required: (schema as { required?: string[] }).required ?? [] } as SchemaNode;
  for (const part of p) {
    if (!((node as { required?: readonly string[] } | undefined)?.required ?? []).includes(part)) return false;
    node = node?.properties?.[part];
  }
  return true;
}
