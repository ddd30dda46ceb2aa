/** `--set stages.sft.with.learning_rate=3e-4`: typed overrides applied to the parsed YAML document. */
import { isMap, isScalar, isSeq, parse } from 'yaml';
import { didYouMean, type Diagnostic } from '../diagnostics.ts';
import type { YamlSource } from './locate.ts';

/**
 * Applies each flag to `source.doc` and records it in `source.overrides`, so a later schema error on
 * an overridden value points at the flag. The value is read as YAML (`3e-4` is a number, `[a, b]` a
 * list, `"3"` a string). Overrides may add keys but not stages: a stage needs `uses`, which a typo'd
 * stage name would lack, so an unknown stage name is reported here, with a suggestion.
 */
const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

export function applyOverrides(source: YamlSource, flags: readonly string[]): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const raw of flags) {
    const flag = `--set ${raw}`;
    const eq = raw.indexOf('=');
    const keyText = eq < 0 ? '' : raw.slice(0, eq);
    const path = keyText.split('.');
    if (eq < 0 || path.some((segment) => segment === '')) {
      diagnostics.push({ location: { origin: flag }, message: 'expected KEY.PATH=VALUE, e.g. stages.sft.with.learning_rate=3e-4' });
      continue;
    }
    const reserved = path.find((segment) => RESERVED_KEYS.has(segment));
    if (reserved !== undefined) {
      // Once the document becomes a plain object, `__proto__` would set its prototype rather than
      // a key: the override would vanish (or reach every object), so it is refused by name.
      diagnostics.push({ location: { origin: flag }, path, message: `"${reserved}" cannot be a key: it names an object's prototype machinery, not a setting` });
      continue;
    }
    let value: unknown;
    try {
      value = parse(raw.slice(eq + 1));
    } catch (error) {
      diagnostics.push({ location: { origin: flag }, message: `the value is not valid YAML: ${(error as Error).message.split('\n')[0]}` });
      continue;
    }
    const problem = checkPath(source, path);
    if (problem) {
      diagnostics.push({ location: { origin: flag }, path, message: problem });
      continue;
    }
    source.doc.setIn(path, source.doc.createNode(value));
    source.overrides.push({ path, flag });
  }
  return diagnostics;
}

function checkPath(source: YamlSource, path: string[]): string | undefined {
  if (path[0] === 'stages' && path.length >= 2) {
    const stages = source.doc.get('stages');
    const names = isMap(stages) ? stages.items.map((item) => String(isScalar(item.key) ? item.key.value : item.key)) : [];
    if (!names.includes(path[1] as string)) return `no stage named "${path[1]}"${didYouMean(path[1] as string, names)}`;
  }
  let node: unknown = source.doc.contents;
  for (let i = 0; i < path.length - 1; i++) {
    if (node === null || node === undefined) return undefined; // setIn creates the missing maps
    if (isMap(node)) node = node.get(path[i], true);
    else if (isSeq(node) && /^\d+$/.test(path[i] as string)) node = node.get(Number(path[i]), true);
    else return `cannot set a key inside "${path.slice(0, i).join('.')}": it is ${isSeq(node) ? 'a list' : 'a scalar'}, not a map`;
  }
  if (!(node === null || node === undefined || isMap(node) || isSeq(node))) {
    return `cannot set a key inside "${path.slice(0, -1).join('.')}": it is a scalar, not a map`;
  }
  return undefined;
}
