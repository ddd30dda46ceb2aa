import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { offlineLoader, plottableCurves, renderVegaLite, thinCurves } from '../../pipeline/report/charts.ts';

describe('curve points', () => {
  it('thins a long curve to evenly spaced points, keeping the last, and leaves short ones whole', () => {
    const long = Array.from({ length: 1000 }, (_, step) => ({ step, key: 'loss', value: step }));
    const short = [1, 2].map((step) => ({ step, key: 'kl', value: 0 }));
    const thinned = thinCurves([...long, ...short], 4);
    // Stride 1000/4 = 250: steps 0, 250, 500, then the last (999).
    expect(thinned.filter((p) => p.key === 'loss').map((p) => p.step)).toEqual([0, 250, 500, 999]);
    expect(thinned.filter((p) => p.key === 'kl')).toEqual(short);
  });

  it('plots only keys with two or more points (one point is a summary figure)', () => {
    const points = [
      { step: 0, key: 'loss', value: 2 },
      { step: 1, key: 'loss', value: 1 },
      { step: 1, key: 'dev_acc', value: 0.5 },
    ];
    expect(plottableCurves(points).map((p) => p.key)).toEqual(['loss', 'loss']);
  });
});

function stageWithCharts(blocks: { title: string; spec: Record<string, unknown> }[]) {
  return {
    name: 'score',
    type: 'exec',
    needs: [],
    state: 'succeeded' as const,
    cached: false,
    durationS: 1,
    decision: null,
    fingerprint: null,
    manifest: null,
    curves: [],
    fragment: {
      title: 'Scores',
      blocks: [...blocks.map((b) => ({ type: 'chart' as const, ...b })), { type: 'table' as const, title: 'Kept', columns: ['a'], rows: [[1]] }],
    },
  };
}

describe('charts render offline', () => {
  it('refuses hostile and loading chart fragments with a message, fetches nothing, and still writes the report', async () => {
    let requests = 0;
    const server = createServer((_request, response) => {
      requests++;
      response.end('[{"a": 1}]');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const { renderReport } = await import('../../pipeline/report/html.ts');
      const x = { field: 'a', type: 'quantitative' };
      const stage = stageWithCharts([
        { title: 'Link', spec: { data: { values: [{ a: 1 }] }, mark: { type: 'point', href: 'javascript:alert(1)' }, encoding: { x } } },
        { title: 'Linked points', spec: { data: { values: [{ a: 1 }] }, mark: 'point', encoding: { x, href: { value: 'javascript:alert(1)' } } } },
        { title: 'Remote data', spec: { data: { url: `http://127.0.0.1:${port}/rows.json` }, mark: 'point', encoding: { x } } },
        { title: 'Remote image', spec: { data: { values: [{ a: 1 }] }, mark: { type: 'image', width: 9, height: 9 }, encoding: { x, url: { value: `http://127.0.0.1:${port}/i.png` } } } },
        // A column named url is data: it renders.
        { title: 'Inline', spec: { data: { values: [{ a: 1, url: 'http://example.com' }, { a: 2, url: 'x' }] }, mark: 'point', encoding: { x } } },
      ]);
      const data = { pipeline: 'p', configFile: 'p.yaml', storeRoot: '/s', run: null, stages: [stage], problems: [] as string[] };
      const { html, charts } = await renderReport(data, new Date(0));
      expect(data.problems).toEqual([
        'score: chart "Link" could not be rendered: spec.mark.href: a chart in the report links nowhere (found "javascript:alert(1)")',
        'score: chart "Linked points" could not be rendered: spec.encoding.href: a chart in the report links nowhere (found {"value":"javascript:alert(1)"})',
        `score: chart "Remote data" could not be rendered: spec.data.url: a chart in the report loads nothing (found "http://127.0.0.1:${port}/rows.json"); give its data inline as data.values`,
        `score: chart "Remote image" could not be rendered: spec.encoding.url: a chart in the report loads nothing (found {"value":"http://127.0.0.1:${port}/i.png"}); give its data inline as data.values`,
      ]);
      expect(charts).toBe(1);
      expect(html).toContain('<h3>Kept</h3>');
      expect(html).not.toMatch(/href="(?!#)/);
      expect(requests).toBe(0);
    } finally {
      server.close();
    }
  });

  it("Vega's loader fetches nothing and gives links and images no URL", async () => {
    await expect(offlineLoader.load('http://127.0.0.1:9/rows.json')).rejects.toThrow('a chart in the report loads nothing: "http://127.0.0.1:9/rows.json" was not fetched');
    await expect(offlineLoader.sanitize()).resolves.toEqual({ href: null });
    // A plain chart still renders to an SVG with no link in it.
    const svg = await renderVegaLite({ data: { values: [{ a: 1 }, { a: 2 }] }, mark: 'point', encoding: { x: { field: 'a', type: 'quantitative' } } });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).not.toMatch(/href="(?!#)/);
  });
});

describe('renderReport', () => {
  it('lists a chart that cannot be rendered as a problem and still writes the rest', async () => {
    const { renderReport } = await import('../../pipeline/report/html.ts');
    const stage = stageWithCharts([{ title: 'Broken', spec: { mark: 'no-such-mark' } }]);
    const data = { pipeline: 'p', configFile: 'p.yaml', storeRoot: '/s', run: null, stages: [stage], problems: [] as string[] };
    const { html, charts } = await renderReport(data, new Date(0));
    expect(charts).toBe(0);
    expect(data.problems).toEqual([expect.stringMatching(/^score: chart "Broken" could not be rendered: /)]);
    expect(html).toContain('<h3>Kept</h3>');
    expect(html).toContain('<h2>Problems</h2>');
  });
});
