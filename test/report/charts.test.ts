import { describe, expect, it } from 'vitest';
import { plottableCurves, thinCurves } from '../../pipeline/report/charts.ts';

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

describe('renderReport', () => {
  it('lists a chart that cannot be rendered as a problem and still writes the rest', async () => {
    const { renderReport } = await import('../../pipeline/report/html.ts');
    const stage = {
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
        blocks: [
          { type: 'chart' as const, title: 'Broken', spec: { mark: 'no-such-mark' } },
          { type: 'table' as const, title: 'Kept', columns: ['a'], rows: [[1]] },
        ],
      },
    };
    const data = { pipeline: 'p', configFile: 'p.yaml', storeRoot: '/s', run: null, stages: [stage], problems: [] as string[] };
    const { html, charts } = await renderReport(data, new Date(0));
    expect(charts).toBe(0);
    expect(data.problems).toEqual([expect.stringMatching(/^score: chart "Broken" could not be rendered: /)]);
    expect(html).toContain('<h3>Kept</h3>');
    expect(html).toContain('<h2>Problems</h2>');
  });
});
