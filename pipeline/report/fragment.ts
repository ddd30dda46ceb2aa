/**
 * A report fragment: what a stage writes as `report.json` in its artifact so that `pipeline report`
 * shows its results. Generic on purpose: tables, Vega-Lite charts (rendered to SVG by the report)
 * and preformatted text blocks; the report knows nothing of what they mean.
 */
export const REPORT_FRAGMENT_FILE = 'report.json';

export type Cell = string | number | boolean | null;

export type FragmentBlock =
  | { type: 'table'; title: string; columns: string[]; rows: Cell[][]; note?: string }
  /** A Vega-Lite spec with inline data (`data.values`). */
  | { type: 'chart'; title: string; spec: Record<string, unknown> }
  /** Titled preformatted texts, e.g. sample completions. */
  | { type: 'texts'; title: string; items: { heading: string; text: string }[] };

export interface ReportFragment {
  title: string;
  blocks: FragmentBlock[];
}

/** Checks the shape of a parsed `report.json`; returns what is wrong, naming the block, or nothing. */
export function fragmentProblem(value: unknown): string | undefined {
  const fragment = value as Partial<ReportFragment> | null;
  if (typeof fragment !== 'object' || fragment === null) return 'not an object';
  if (typeof fragment.title !== 'string') return 'title: expected a string';
  if (!Array.isArray(fragment.blocks)) return 'blocks: expected an array';
  for (const [i, block] of fragment.blocks.entries()) {
    const b = block as Partial<FragmentBlock> & Record<string, unknown>;
    if (typeof b?.title !== 'string') return `blocks[${i}].title: expected a string`;
    if (b.type === 'table') {
      if (!Array.isArray(b.columns) || !Array.isArray(b.rows)) return `blocks[${i}] (table): expected columns and rows arrays`;
      const width = b.columns.length;
      const bad = (b.rows as unknown[]).findIndex((row) => !Array.isArray(row) || row.length !== width);
      if (bad >= 0) return `blocks[${i}].rows[${bad}]: expected ${width} cells`;
    } else if (b.type === 'chart') {
      if (typeof b.spec !== 'object' || b.spec === null) return `blocks[${i}].spec (chart): expected a Vega-Lite object`;
    } else if (b.type === 'texts') {
      if (!Array.isArray(b.items)) return `blocks[${i}].items (texts): expected an array`;
    } else return `blocks[${i}].type: expected table, chart or texts, found ${JSON.stringify(b.type)}`;
  }
  return undefined;
}
