/**
 * Charts as static SVG, rendered in Node by Vega-Lite + Vega (`view.toSVG()` with the headless
 * 'none' renderer): the report embeds the SVG text, so it opens offline with no script at all.
 */
import type { CurvePoint } from './collect.ts';

/**
 * Why a chart spec is refused, or undefined. A report is self-contained and opens offline, so a
 * chart may neither load anything (`data.url`, an image mark's `url`) nor link anywhere (`href`,
 * a `javascript:` one included): its data comes inline, as `data.values`. Checked before Vega sees
 * the spec, because Vega handles a refused link in a promise nobody awaits (an uncaught TypeError
 * that took the whole report down).
 */
export function chartSpecProblem(spec: unknown, at = 'spec'): string | undefined {
  if (Array.isArray(spec)) {
    for (const [i, item] of spec.entries()) {
      const problem = chartSpecProblem(item, `${at}[${i}]`);
      if (problem) return problem;
    }
    return undefined;
  }
  if (spec === null || typeof spec !== 'object') return undefined;
  for (const [key, value] of Object.entries(spec)) {
    // Inline rows are data, not instructions: a `url` column loads nothing unless a channel uses it.
    if (key === 'values' || key === 'datasets') continue;
    if (key === 'href') return `${at}.href: a chart in the report links nowhere (found ${JSON.stringify(value)?.slice(0, 80)})`;
    if (key === 'url') return `${at}.url: a chart in the report loads nothing (found ${JSON.stringify(value)?.slice(0, 80)}); give its data inline as data.values`;
    const problem = chartSpecProblem(value, `${at}.${key}`);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * Vega's resource loader for the report: nothing is fetched or read. `load` (data URLs, files)
 * fails with a message; `sanitize` (links and images) answers with no URL, which Vega renders as
 * no link and no image, so a spec that slipped past chartSpecProblem still loads nothing.
 */
export const offlineLoader = {
  load: async (uri: string) => {
    throw new Error(`a chart in the report loads nothing: "${uri}" was not fetched; give the data inline as data.values`);
  },
  sanitize: async () => ({ href: null }),
  http: async (uri: string) => offlineLoader.load(uri),
  file: async (uri: string) => offlineLoader.load(uri),
};

/** Compiles a Vega-Lite spec and renders it to an SVG string; a spec that would load or link is refused. */
export async function renderVegaLite(spec: Record<string, unknown>): Promise<string> {
  const problem = chartSpecProblem(spec);
  if (problem) throw new Error(problem);
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vegaLite.compile({ $schema: 'https://vega.github.io/schema/vega-lite/v6.json', ...spec } as import('vega-lite').TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', loader: offlineLoader as unknown as import('vega').Loader });
  try {
    const svg = await view.toSVG();
    // The SVG's only URLs are its namespace declarations; anything else would be fetched or followed.
    const external = /\s(?:xlink:)?href="(?!#)([^"]*)"/.exec(svg);
    if (external) throw new Error(`the rendered chart links to "${external[1]?.slice(0, 80)}"; a chart in the report loads nothing`);
    return svg;
  } finally {
    view.finalize();
  }
}

/**
 * Small multiples of one stage's curves: one panel per metric key, each with its own y scale
 * (a loss near 2 and a KL near 0.01 on one axis would flatten one of them). Concatenated views
 * rather than a facet, because a facet draws empty axes in the grid's unused cells.
 */
export function curvesSpec(points: readonly CurvePoint[]): Record<string, unknown> {
  const keys = [...new Set(points.map((p) => p.key))];
  return {
    data: { values: points },
    columns: 3,
    concat: keys.map((key) => ({
      title: key,
      width: 220,
      height: 120,
      transform: [{ filter: { field: 'key', equal: key } }],
      mark: { type: 'line', point: points.length / keys.length <= 60 },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'step' },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
      },
    })),
  };
}

/**
 * At most `limit` points per key, evenly spaced and always keeping the last: a long run logs
 * tens of thousands of steps, and the SVG of every point would make the report megabytes.
 */
export function thinCurves(points: readonly CurvePoint[], limit: number): CurvePoint[] {
  const byKey = new Map<string, CurvePoint[]>();
  for (const p of points) byKey.set(p.key, [...(byKey.get(p.key) ?? []), p]);
  return [...byKey.values()].flatMap((series) => {
    if (series.length <= limit) return series;
    const stride = series.length / limit;
    const kept = Array.from({ length: limit - 1 }, (_, i) => series[Math.floor(i * stride)] as CurvePoint);
    return [...kept, series[series.length - 1] as CurvePoint];
  });
}

/** Keys with at least two points: a single point is a summary figure, shown in the tables. */
export function plottableCurves(points: readonly CurvePoint[]): CurvePoint[] {
  const counts = new Map<string, number>();
  for (const p of points) counts.set(p.key, (counts.get(p.key) ?? 0) + 1);
  return points.filter((p) => (counts.get(p.key) ?? 0) >= 2);
}
