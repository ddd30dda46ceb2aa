/** zod issues -> located diagnostics that say what was expected and what was found. */
import { z } from 'zod';
import { didYouMean, type Diagnostic, type KeyPath } from '../diagnostics.ts';
import { locate, type YamlSource } from './locate.ts';

/** The schema that validates the value at `path` under `schema`, if it can be followed there. */
export function schemaAt(schema: z.ZodType, path: KeyPath): z.ZodType | undefined {
  let current: z.ZodType | undefined = schema;
  for (const segment of path) {
    current = unwrap(current);
    if (current instanceof z.ZodObject) current = (current.shape as Record<string, z.ZodType>)[String(segment)];
    else if (current instanceof z.ZodRecord) current = current.valueType as z.ZodType;
    else if (current instanceof z.ZodArray) current = current.element as z.ZodType;
    else return undefined;
    if (!current) return undefined;
  }
  return unwrap(current);
}

function unwrap(schema: z.ZodType | undefined): z.ZodType | undefined {
  let current = schema;
  for (;;) {
    if (
      current instanceof z.ZodDefault ||
      current instanceof z.ZodPrefault ||
      current instanceof z.ZodOptional ||
      current instanceof z.ZodNullable
    ) {
      current = current.unwrap() as z.ZodType;
    } else {
      return current;
    }
  }
}

/** zod's type names in YAML's words. */
const YAML_TYPE: Record<string, string> = { array: 'list', object: 'map' };

export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  if (typeof value === 'number' && Number.isInteger(value)) return `integer ${value}`;
  return `${typeof value} ${String(value)}`;
}

function valueAt(root: unknown, path: KeyPath): unknown {
  let current = root;
  for (const segment of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[segment];
  }
  return current;
}

function bound(issue: { origin?: string; inclusive?: boolean }, value: unknown, bigger: boolean): string {
  const op = bigger ? (issue.inclusive ? '<=' : '<') : issue.inclusive ? '>=' : '>';
  const subject =
    issue.origin === 'string' ? 'a string of length' : issue.origin === 'array' ? 'a list of length' : `a ${issue.origin ?? 'value'}`;
  return `${subject} ${op} ${String(value)}`;
}

/**
 * `root` is the value that was validated and `schema` its schema; `base` is where that value sits
 * in the file (e.g. ['stages', 'sft', 'with'] for a stage's params).
 */
export function issuesToDiagnostics(
  issues: readonly z.core.$ZodIssue[],
  root: unknown,
  schema: z.ZodType,
  source: YamlSource,
  base: KeyPath = [],
): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const issue of issues) {
    const local = issue.path as (string | number)[];
    const path = [...base, ...local];
    const value = valueAt(root, local);
    const found = describeValue(value);
    switch (issue.code) {
      case 'unrecognized_keys': {
        const target = schemaAt(schema, local);
        const allowed = target instanceof z.ZodObject ? Object.keys(target.shape) : [];
        for (const key of issue.keys) {
          diagnostics.push({
            location: locate(source, [...path, key], { key: true }),
            path,
            message: `unknown key "${key}"${didYouMean(key, allowed)}; expected one of: ${allowed.join(', ')}`,
          });
        }
        break;
      }
      case 'invalid_union':
      case 'invalid_type': {
        const expected =
          issue.code === 'invalid_type'
            ? (YAML_TYPE[issue.expected] ?? issue.expected)
            : [
                ...new Set(
                  issue.errors.flatMap((alternative) =>
                    alternative
                      .filter((i) => i.path.length === 0 && i.code === 'invalid_type')
                      .map((i) => (i as { expected: string }).expected)
                      .map((name) => YAML_TYPE[name] ?? name),
                  ),
                ),
              ].join(' or ') || 'a valid value';
        if (value === undefined) {
          const key = path.at(-1);
          diagnostics.push({
            location: locate(source, path.slice(0, -1)),
            path: path.slice(0, -1),
            message: `missing required key "${String(key)}" (${expected})`,
          });
        } else {
          diagnostics.push({ location: locate(source, path), path, message: `expected ${expected}, found ${found}` });
        }
        break;
      }
      case 'too_small':
        diagnostics.push({ location: locate(source, path), path, message: `expected ${bound(issue, issue.minimum, false)}, found ${found}` });
        break;
      case 'too_big':
        diagnostics.push({ location: locate(source, path), path, message: `expected ${bound(issue, issue.maximum, true)}, found ${found}` });
        break;
      case 'invalid_value': {
        const options = issue.values.map((v) => JSON.stringify(v));
        const hint = typeof value === 'string' ? didYouMean(value, issue.values.map(String)) : '';
        diagnostics.push({
          location: locate(source, path),
          path,
          message: `expected one of ${options.join(', ')}, found ${found}${hint}`,
        });
        break;
      }
      case 'invalid_key': {
        const key = local.at(-1);
        diagnostics.push({
          location: locate(source, path, { key: true }),
          path: path.slice(0, -1),
          message: `bad name "${String(key)}": expected ${issue.issues[0]?.message ?? 'a valid key'}`,
        });
        break;
      }
      case 'invalid_format':
      case 'custom':
        diagnostics.push({ location: locate(source, path), path, message: `expected ${issue.message}, found ${found}` });
        break;
      default:
        diagnostics.push({ location: locate(source, path), path, message: issue.message });
    }
  }
  return diagnostics;
}
