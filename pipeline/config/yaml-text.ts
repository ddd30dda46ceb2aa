/**
 * The YAML layer of the config phase: text -> document (syntax errors, duplicate keys), and
 * document -> plain value (alias bombs), each problem located in the file.
 */
import { isScalar, LineCounter, parseDocument, visit, type Alias, type Document, type Node } from 'yaml';
import type { Diagnostic, SourceFile } from '../diagnostics.ts';

export interface ParsedYaml {
  doc: Document;
  sourceFile: SourceFile;
  /** Problems that stop everything (syntax): nothing else can be checked. */
  fatal: Diagnostic[];
  /** Problems reported with every other error of the config (duplicate keys). */
  diagnostics: Diagnostic[];
}

export function parseConfigYaml(displayPath: string, text: string): ParsedYaml {
  const lines = new LineCounter();
  const sourceFile: SourceFile = { displayPath, text, lines };
  // uniqueKeys off: the library checks each key against every earlier key of its map, quadratic in
  // the map's size (a 4 MB config took 27 s). duplicateKeys below does it in one pass.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const fatal = doc.errors.map((error) => ({
    location: { file: sourceFile, start: error.pos[0], end: error.pos[1] },
    message: `${error.message} (YAML ${error.code})`,
  }));
  return { doc, sourceFile, fatal, diagnostics: fatal.length > 0 ? [] : duplicateKeys(doc, sourceFile) };
}

/** Every key repeated in its map, located at the repeat, naming the line of the first: one pass, a Set per map. */
function duplicateKeys(doc: Document, sourceFile: SourceFile): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  visit(doc, {
    Map(_, map) {
      const seen = new Map<unknown, Node>();
      for (const pair of map.items) {
        // Keys that are not scalars (a map as a key) are not used by configs; the schema refuses them.
        if (!isScalar(pair.key)) continue;
        const first = seen.get(pair.key.value);
        if (!first) {
          seen.set(pair.key.value, pair.key);
          continue;
        }
        const [start, end] = pair.key.range ?? [0, 1];
        const firstLine = first.range ? sourceFile.lines.linePos(first.range[0]).line : undefined;
        diagnostics.push({
          location: { file: sourceFile, start, end },
          message: `duplicate key "${String(pair.key.value)}"${firstLine === undefined ? '' : ` (first at line ${firstLine})`}: a map may name a key once`,
        });
      }
    },
  });
  return diagnostics;
}

/**
 * The document as a plain value, or a located error. The YAML library refuses to expand aliases
 * past a limit (its defence against "billion laughs" alias bombs) with a bare ReferenceError;
 * that becomes an error at the alias that nests others.
 */
export function configValue(doc: Document, sourceFile: SourceFile): { value: unknown } | { diagnostic: Diagnostic } {
  try {
    return { value: doc.toJS() };
  } catch (error) {
    if (!(error instanceof ReferenceError)) throw error;
    const alias = nestingAlias(doc);
    const [start, end] = alias?.range ?? [0, 1];
    return {
      diagnostic: {
        location: { file: sourceFile, start, end },
        message: `${alias ? `alias *${alias.source}` : 'the aliases'} expand${alias ? 's' : ''} too far (${error.message}): an alias bomb? Write the values out, or nest fewer aliases`,
      },
    };
  }
}

/** The first alias whose anchored node itself holds aliases (how an alias bomb grows), else the first alias. */
function nestingAlias(doc: Document): Alias | undefined {
  let first: Alias | undefined;
  let nesting: Alias | undefined;
  visit(doc, {
    Alias(_, alias) {
      first ??= alias;
      const target = alias.resolve(doc);
      let holdsAliases = false;
      if (target && !isScalar(target)) {
        visit(target, {
          Alias() {
            holdsAliases = true;
            return visit.BREAK;
          },
        });
      }
      if (holdsAliases && !nesting) {
        nesting = alias;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return nesting ?? first;
}
