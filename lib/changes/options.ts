import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { FromSchema, JSONSchema } from 'json-schema-to-ts';
import { ChangeInputError } from '../postgres/identifiers.js';

/**
 * A change's options, written once as a JSON Schema: its TypeScript type is derived from it (`OptionsOf`), its
 * constructor validates with it (`checkOptions`), and `umzug create` builds its template from it (`x-template`,
 * `x-cli`, `default` as the placeholder). Keys beyond JSON Schema:
 * - `x-change`: the constructor's exported name; `x-template`: the template's name, where `create` offers one;
 * - `x-notes`: lines `create` writes above the call; `x-cli`: the flag that sets an option (`x-negate`: the flag
 *   sets it to false); `x-sql`: the value is SQL (rendered as a template literal).
 */
export interface ChangeSchema {
  readonly type: 'object';
  readonly 'x-change': string;
  readonly 'x-template'?: string;
  readonly description: string;
  readonly 'x-notes'?: readonly string[];
  readonly additionalProperties: false;
  readonly required?: readonly string[];
  readonly properties: Readonly<Record<string, unknown>>;
}

/** Readonly all the way down: options written `as const` (or kept in readonly arrays) are accepted as they are. */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends readonly (infer U)[]
    ? T extends readonly [unknown, ...unknown[]]
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : readonly DeepReadonly<U>[]
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;

/** The TypeScript type of a change's options, derived from its schema. */
export type OptionsOf<S extends JSONSchema> = DeepReadonly<FromSchema<S, { keepDefaultedPropertiesOptional: true }>>;

// ---- building blocks (each fact once) ------------------------------------------------------------------------------

/** An identifier: PostgreSQL keeps 63 bytes of a name (ident() checks bytes; this, characters). */
export const NAME = { type: 'string', minLength: 1, maxLength: 63 } as const;
/** A table: a bare name (in the configured schema) or { schema, name }. */
export const TABLE = {
  anyOf: [NAME, { type: 'object', additionalProperties: false, required: ['schema', 'name'], properties: { schema: NAME, name: NAME } }],
} as const;
/** Distinct column names, at least one. */
export const NAMES = { type: 'array', minItems: 1, uniqueItems: true, items: NAME } as const;
/** SQL the author writes (an expression or a statement): checked by PostgreSQL's grammar in the constructor. */
export const SQL = { type: 'string', minLength: 1, 'x-sql': true } as const;
/** A PostgreSQL type name (`text`, `numeric(10,2)`): checked by PostgreSQL's grammar in the constructor. */
export const TYPE = { type: 'string', minLength: 1 } as const;
/** A constant default, passed as a literal. */
export const CONSTANT = { type: ['string', 'number', 'boolean'] } as const;
export const READ_FLAG = {
  ...NAME,
  'x-cli': '--read-flag',
  description: 'read-cutover flag: the contract waits until it has been at 100 % for the safety window (umzug flag)',
} as const;
export const ON_CONVERSION_ERROR = { type: 'string', enum: ['record', 'reject'], 'x-cli': '--on-conversion-error' } as const;

// ---- validation ----------------------------------------------------------------------------------------------------

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
ajv.addVocabulary(['x-change', 'x-template', 'x-notes', 'x-cli', 'x-sql', 'x-negate']);
const compiled = new WeakMap<object, ValidateFunction>();

/** The schema's validator, compiled on first use (a migration file loads a handful of changes). */
export function validatorOf(schema: ChangeSchema): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

/**
 * The options, checked against the change's schema: a wrong or missing option is a ChangeInputError naming each
 * field, before anything connects. Cross-field rules and SQL grammar stay in the constructor.
 */
export function checkOptions(schema: ChangeSchema, options: unknown): void {
  const what = schema['x-change'];
  if (!options || typeof options !== 'object' || Array.isArray(options)) {
    throw new ChangeInputError(`${what}: its options must be an object, got ${JSON.stringify(options)}`);
  }
  const validate = validatorOf(schema);
  if (!validate(options)) throw new ChangeInputError(`${what}: ${describeOptionErrors(validate.errors ?? [], options)}`);
}

function valueAt(root: unknown, pointer: string): unknown {
  let v = root;
  for (const k of pointer.split('/').slice(1)) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
  return v;
}

const fieldOf = (pointer: string) => pointer.split('/').slice(1).map((k, i) => (/^\d+$/.test(k) ? `[${k}]` : `${i ? '.' : ''}${k}`)).join('') || '(options)';

/** ajv's errors as one sentence per field, in words an author recognises. */
export function describeOptionErrors(errors: readonly ErrorObject[], root: unknown): string {
  // A field that fails an anyOf: when its value has the JSON type of one branch (a list for `string | string[]`), that
  // branch's own errors say what is wrong; otherwise one line lists the branches.
  const kept = new Set<ErrorObject>(errors);
  for (const e of errors.filter((x) => x.keyword === 'anyOf')) {
    const value = valueAt(root, e.instancePath);
    const type = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
    const branches = ((e.parentSchema as { anyOf?: { type?: string }[] })?.anyOf ?? []).map((b) => b.type);
    const chosen = branches.findIndex((t) => t === type || (t === 'integer' && type === 'number'));
    const under = (x: ErrorObject, i?: number) => x !== e && x.instancePath.startsWith(e.instancePath) && x.schemaPath.startsWith(`${e.schemaPath}/${i ?? ''}`);
    for (const x of errors) if (under(x) && (chosen < 0 || !under(x, chosen))) kept.delete(x);
    if (chosen >= 0) kept.delete(e);
  }
  const lines = [...kept]
    .map((e) => {
      const got = ` got ${JSON.stringify(valueAt(root, e.instancePath))}`;
      const field = fieldOf(e.instancePath);
      const p = e.params as Record<string, unknown>;
      switch (e.keyword) {
        case 'required':
          return `${field === '(options)' ? '' : `${field}.`}${String(p.missingProperty)} is required`;
        case 'additionalProperties':
          return `${field === '(options)' ? '' : `${field}.`}${String(p.additionalProperty)} is not an option (options: ${Object.keys((e.parentSchema as { properties?: object })?.properties ?? {}).join(', ')})`;
        case 'type':
          return `${field} must be ${String(p.type).split(',').map((t) => (t === 'array' ? 'a list' : t === 'object' ? 'an object' : `a ${t}`)).join(' or ')},${got}`;
        case 'minLength':
          return `${field} must be a non-empty string,${got}`;
        case 'maxLength':
          return `${field} is longer than ${String(p.limit)} characters; PostgreSQL keeps at most 63 bytes of a name,${got}`;
        case 'minItems':
          return `${field} must list at least ${String(p.limit)},${got}`;
        case 'maxItems':
          return `${field} must list at most ${String(p.limit)},${got}`;
        case 'uniqueItems':
          return `${field} names the same item twice,${got}`;
        case 'enum':
          return `${field} must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')},${got}`;
        case 'anyOf':
          return `${field} must be ${describeBranches(e.parentSchema)},${got}`;
        default:
          return `${field} ${e.message ?? 'is invalid'},${got}`;
      }
    });
  return [...new Set(lines)].join('; ');
}

function describeBranches(schema: unknown): string {
  const branches = ((schema as { anyOf?: unknown[] })?.anyOf ?? []) as { type?: string; properties?: object }[];
  return branches
    .map((b) => (b.type === 'object' ? `{ ${Object.keys(b.properties ?? {}).join(', ')} }` : b.type === 'array' ? 'a list' : `a ${b.type ?? 'value'}`))
    .join(' or ');
}
