import type { Statement } from '../db/db.js';
import type { Step } from '../migration.js';
import { ChangeInputError } from '../postgres/identifiers.js';
import { oneExpressionProblem, oneTypeProblem, sqlParserReady } from '../postgres/sql-ast.js';

/** A step whose statements run together in one lock-safe transaction. */
export function txStep(id: string, description: string, statements: readonly Statement[]): Step {
  return { id, description, statements, transactional: true };
}

/**
 * Types are SQL the migration author writes (`text`, `varchar(20)`, `numeric(10,2)`, `timestamptz[]`); they cannot
 * be parameters. This refuses what cannot be a type name, so a stray `;` or comment never reaches the server: by
 * PostgreSQL's own grammar once the parser is loaded (the engine loads it before it reads migration files), else by
 * the characters a type name can hold.
 */
export function checkType(type: unknown, field: string): string {
  if (typeof type !== 'string' || !/^[A-Za-z_][A-Za-z0-9_ ."(),[\]]*$/.test(type.trim()) || type.includes('--')) {
    throw new ChangeInputError(`${field} must be a PostgreSQL type name such as "text" or "numeric(10,2)", got ${JSON.stringify(type)}`);
  }
  const problem = sqlParserReady() ? oneTypeProblem(type.trim()) : null;
  if (problem) throw new ChangeInputError(`${field} must be one PostgreSQL type name such as "text" or "numeric(10,2)", but ${problem}: ${JSON.stringify(type)}`);
  return type.trim();
}

/** A SQL expression written by the author: one expression, never a statement list. */
export function checkExpression(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim().length === 0) {
    throw new ChangeInputError(`${field} must be a SQL expression string, got ${JSON.stringify(value)}`);
  }
  // Strings and quoted identifiers (a column named `x"; drop table users; --`) may hold a `;`.
  if (/;\s*\S/.test(value.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"/g, "''"))) {
    throw new ChangeInputError(`${field} must be one SQL expression, not several statements: ${JSON.stringify(value)}`);
  }
  // Exactly, by PostgreSQL's grammar, once the parser is loaded (the engine loads it before reading migration files).
  const problem = sqlParserReady() ? oneExpressionProblem(value) : null;
  if (problem) throw new ChangeInputError(`${field} must be one SQL expression, but ${problem}: ${JSON.stringify(value)}`);
  return value;
}

