/**
 * Charts as static SVG, rendered in Node by Vega-Lite + Vega (`view.toSVG()` with the headless
 * 'none' renderer): the report embeds the SVG text, so it opens offline with no script at all.
 */
import type { CurvePoint } from './collect.ts';

/** Compiles a Vega-Lite spec and renders it to an SVG string. */
export async function renderVegaLite(spec: Record<string, unknown>): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import('vega'), import('vega-lite')]);
  const compiled = vegaLite.compile({ $schema: 'https://vega.github.io/schema/vega-lite/v6.json', ...spec } as import('vega-lite').TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
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
