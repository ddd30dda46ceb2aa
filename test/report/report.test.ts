/**
 * `pipeline report` on a real run of exec stages that write a metrics.jsonl (with one bad line)
 * and a report fragment: the HTML is self-contained, shows every stage with its state and cache
 * hit, renders the curves and the fragment's chart to SVG, and lists the skipped line. Then the
 * page is opened in headless Chromium (skipped where Chromium is missing).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'pipeline.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FRAGMENT = {
  title: 'Scores',
  blocks: [
    { type: 'table', title: 'Table <one>', columns: ['model', 'acc'], rows: [['a', 0.5], ['b', null]] },
    { type: 'chart', title: 'Bars', spec: { data: { values: [{ m: 'a', v: 1 }, { m: 'b', v: 2 }] }, mark: 'bar', encoding: { x: { field: 'm', type: 'nominal' }, y: { field: 'v', type: 'quantitative' } } } },
    { type: 'texts', title: 'Samples', items: [{ heading: 'x', text: '<think>\nrules: none\n</think>' }] },
  ],
};

// train writes three good metric lines and one that is not JSON; score writes the fragment.
const CONFIG = `name: rep
seed: 1
store: store
stages:
  data: { uses: exec, with: { command: 'echo data > "$PIPELINE_OUT/d.txt"' } }
  train:
    uses: exec
    needs: [data]
    with:
      command: |
        printf '{"step":1,"loss":2.5,"kl":0.1}\\n{"step":2,"loss":2.0,"kl":0.2}\\nnot json\\n{"step":3,"loss":1.5,"kl":0.15}\\n' > "$PIPELINE_OUT/metrics.jsonl"
  score:
    uses: exec
    needs: [train]
    with: { command: 'cp fragment.json "$PIPELINE_OUT/report.json"', files: [fragment.json] }
`;

function cli(...args: string[]): string {
  return execFileSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let html = '';
beforeAll(() => {
  writeFileSync(path.join(dir, 'pipeline.yaml'), CONFIG);
  writeFileSync(path.join(dir, 'fragment.json'), JSON.stringify(FRAGMENT));
  cli('run', 'pipeline.yaml');
  // A second run: every stage is a cache hit in the run record the report reads.
  cli('run', 'pipeline.yaml', '--force', 'score');
  const out = cli('report', 'pipeline.yaml', '--out', 'report.html');
  // Curves of train (one chart) + the fragment's chart.
  expect(out).toMatch(/report: .*report\.html \(3 stages, 3 built, 2 charts/);
  html = readFileSync(path.join(dir, 'report.html'), 'utf8');
}, 60_000);

describe('pipeline report', () => {
  it('is self-contained: no script and no external resource', () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/\b(src|href)="https?:/i);
    expect(html).not.toMatch(/<link\b/i);
  });

  it('shows the DAG with each stage, its state and its cache hit', () => {
    expect(html).toContain('data-stage="data" data-state="cached"');
    expect(html).toContain('data-stage="train" data-state="cached"');
    // --force score: rebuilt, not a cache hit.
    expect(html).toContain('data-stage="score" data-state="succeeded"');
    // Edges: data -> train -> score.
    expect(html.match(/class="edge"/g)).toHaveLength(2);
  });

  it('renders the curves of loss and kl and the fragment to SVG, escaping text', () => {
    const train = /data-chart="train: metrics.jsonl"[\s\S]*?<\/figure>/.exec(html)?.[0] ?? '';
    expect(train).toContain('<svg');
    // Facet headers: one panel per key.
    expect(train).toContain('>loss</text>');
    expect(train).toContain('>kl</text>');
    expect(html).toMatch(/data-chart="Bars"[^>]*><figcaption>Bars<\/figcaption><svg/);
    expect(html).toContain('<h3>Table &lt;one&gt;</h3>');
    expect(html).toContain('<tr><td>a</td><td class="num">0.5000</td></tr><tr><td>b</td><td>–</td></tr>');
    expect(html).toContain('&lt;think&gt;\nrules: none\n&lt;/think&gt;');
  });

  it('reports the skipped metrics line with its file and line number', () => {
    expect(html).toMatch(/metrics\.jsonl:3: invalid JSON .*line skipped/);
    expect(html).toMatch(/metrics\.jsonl: 1 of 4 lines skipped/);
  });

  // Debian's chromium; CHROMIUM_PATH points elsewhere.
  const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  it('renders in headless Chromium: every chart has a drawn SVG, no console error', async (context) => {
    if (!existsSync(chromium)) {
      console.warn(`skipped: ${chromium} is missing (apt-get install -y chromium)`);
      context.skip(`${chromium} is missing (apt-get install -y chromium)`);
    }
    const { chromium: launcher } = await import('playwright-core');
    const profile = mkdtempSync(path.join(os.tmpdir(), 'report-chromium-'));
    const browser = await launcher.launchPersistentContext(profile, {
      executablePath: chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error') errors.push(message.text());
      });
      page.on('pageerror', (error) => errors.push(error.message));
      const requests: string[] = [];
      page.on('request', (request) => requests.push(request.url()));
      await page.goto(`file://${path.join(dir, 'report.html')}`);
      const charts = await page.$$eval('figure.chart', (figures) =>
        figures.map((f) => {
          const svg = f.querySelector('svg');
          const box = svg?.getBoundingClientRect();
          return { title: f.getAttribute('data-chart'), width: box?.width ?? 0, height: box?.height ?? 0, marks: svg?.querySelectorAll('path, rect, line').length ?? 0 };
        }),
      );
      // The DAG, the train curves, the fragment's bar chart.
      expect(charts.map((c) => c.title)).toEqual(['DAG', 'train: metrics.jsonl', 'Bars']);
      for (const chart of charts) {
        expect(chart.width, chart.title ?? '').toBeGreaterThan(50);
        expect(chart.height, chart.title ?? '').toBeGreaterThan(30);
        expect(chart.marks, chart.title ?? '').toBeGreaterThan(2);
      }
      expect(errors).toEqual([]);
      // Only the file itself: nothing fetched from anywhere.
      expect(requests.filter((url) => !url.startsWith('file://'))).toEqual([]);
      const screenshot = path.join(profile, 'report.png');
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`report screenshot: ${screenshot}`);
    } finally {
      await browser.close();
    }
  });
});
