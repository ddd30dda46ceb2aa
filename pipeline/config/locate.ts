/** Maps a key path of the parsed config back to its place in the YAML source. */
import { isMap, isNode, isPair, isScalar, isSeq, type Document, type Node } from 'yaml';
import type { KeyPath, Location, SourceFile } from '../diagnostics.ts';

export interface YamlSource {
  file: SourceFile;
  doc: Document;
  /** `--set` overrides applied to `doc`, as (path, the flag as typed); their nodes have no range. */
  overrides: { path: string[]; flag: string }[];
}

interface Found {
  node: Node | undefined;
  keyNode: Node | undefined;
  /** How many path segments were found; less than the path length when a key is missing. */
  depth: number;
}

function walk(doc: Document, path: KeyPath): Found {
  let node: unknown = doc.contents;
  let keyNode: Node | undefined;
  let depth = 0;
  for (const segment of path) {
    if (isMap(node)) {
      // The last pair with the key: the one whose value the parsed config holds (a duplicate key is
      // an error of its own, but the value checked is the later one).
      const pair = node.items.findLast((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(segment));
      if (!pair) break;
      keyNode = isNode(pair.key) ? pair.key : undefined;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number' && node.items[segment] !== undefined) {
      keyNode = undefined;
      node = node.items[segment];
    } else {
      break;
    }
    depth++;
  }
  return { node: isNode(node) ? node : undefined, keyNode, depth };
}

/**
 * The location of the value at `path` (or of its key, with `key: true`). A missing key resolves to
 * its nearest present parent. Values set by `--set` resolve to the flag.
 */
export function locate(source: YamlSource, path: KeyPath, options: { key?: boolean } = {}): Location | undefined {
  const override = source.overrides
    .filter((o) => o.path.length <= path.length && o.path.every((segment, i) => String(path[i]) === segment))
    .at(-1);
  if (override) return { origin: override.flag };
  const found = walk(source.doc, path);
  const exact = found.depth === path.length;
  const target = exact && options.key && found.keyNode ? found.keyNode : (found.node ?? found.keyNode);
  const range = target?.range;
  if (!range) return { file: source.file, start: 0, end: 1 };
  // A span over several lines (a whole map) is cut to its first line when printed (diagnostics.ts).
  return { file: source.file, start: range[0], end: range[1] };
}
