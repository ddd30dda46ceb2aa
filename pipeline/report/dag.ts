/**
 * The DAG as plain SVG: stages in columns by depth (longest path from a root), edges from each
 * need to its consumer, each box coloured by state with its duration and cache hit.
 *
 * Hand-written rather than Vega-Lite: Vega has no graph layout, and a layered layout of a pipeline
 * (tens of stages, edges only left to right) is a few lines; a layout library (elkjs, dagre) would
 * add a dependency for a picture this simple.
 */
import type { StageReport } from './collect.ts';
import { escapeHtml } from './html-escape.ts';

const BOX = { width: 150, height: 48, gapX: 50, gapY: 18, pad: 10 };

const STATE_FILL: Record<string, string> = {
  succeeded: '#c8e6c9',
  built: '#c8e6c9',
  cached: '#bbdefb',
  failed: '#ffcdd2',
  cancelled: '#ffe0b2',
  skipped: '#eeeeee',
  unselected: '#f5f5f5',
  'not built': '#ffffff',
};

export function stageDepths(stages: readonly Pick<StageReport, 'name' | 'needs'>[]): Map<string, number> {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const depths = new Map<string, number>();
  const depth = (name: string): number => {
    const known = depths.get(name);
    if (known !== undefined) return known;
    const needs = byName.get(name)?.needs ?? [];
    const d = needs.length === 0 ? 0 : 1 + Math.max(...needs.map(depth));
    depths.set(name, d);
    return d;
  };
  for (const s of stages) depth(s.name);
  return depths;
}

export function describeStage(stage: Pick<StageReport, 'state' | 'cached' | 'durationS'>): string {
  const duration = stage.durationS === null ? '' : ` · ${stage.durationS.toFixed(1)}s`;
  return stage.cached ? 'cached (hit)' : `${stage.state}${duration}`;
}

export function dagSvg(stages: readonly StageReport[]): string {
  const depths = stageDepths(stages);
  const rowOf = new Map<string, number>();
  const rowsPerDepth = new Map<number, number>();
  for (const s of stages) {
    const d = depths.get(s.name) ?? 0;
    rowOf.set(s.name, rowsPerDepth.get(d) ?? 0);
    rowsPerDepth.set(d, (rowsPerDepth.get(d) ?? 0) + 1);
  }
  const x = (name: string) => BOX.pad + (depths.get(name) ?? 0) * (BOX.width + BOX.gapX);
  const y = (name: string) => BOX.pad + (rowOf.get(name) ?? 0) * (BOX.height + BOX.gapY);
  const width = BOX.pad * 2 + (Math.max(0, ...depths.values()) + 1) * (BOX.width + BOX.gapX) - BOX.gapX;
  const height = BOX.pad * 2 + Math.max(1, ...rowsPerDepth.values()) * (BOX.height + BOX.gapY) - BOX.gapY;
  const edges = stages.flatMap((s) =>
    s.needs.map((need) => {
      const [x1, y1, x2, y2] = [x(need) + BOX.width, y(need) + BOX.height / 2, x(s.name), y(s.name) + BOX.height / 2];
      const mid = (x1 + x2) / 2;
      return `<path class="edge" d="M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 4},${y2}" fill="none" stroke="#777" marker-end="url(#arrow)"/>`;
    }),
  );
  const nodes = stages.map((s) => {
    const fill = s.cached ? (STATE_FILL.cached as string) : (STATE_FILL[s.state] ?? '#ffffff');
    const [bx, by] = [x(s.name), y(s.name)];
    return [
      `<g class="stage" data-stage="${escapeHtml(s.name)}" data-state="${escapeHtml(s.state)}">`,
      `<title>${escapeHtml(`${s.name} (${s.type}): ${s.decision ?? describeStage(s)}`)}</title>`,
      `<rect x="${bx}" y="${by}" width="${BOX.width}" height="${BOX.height}" rx="6" fill="${fill}" stroke="#555"/>`,
      `<text x="${bx + 8}" y="${by + 19}" font-size="13" font-weight="bold">${escapeHtml(s.name)}</text>`,
      `<text x="${bx + 8}" y="${by + 37}" font-size="11">${escapeHtml(describeStage(s))}</text>`,
      '</g>',
    ].join('');
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>',
    ...edges,
    ...nodes,
    '</svg>',
  ].join('\n');
}
