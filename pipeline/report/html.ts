/**
 * The report page: one self-contained HTML file (inline CSS, charts as inline SVG, no script, no
 * external resource), so it can be mailed, archived with the run, or opened with no network.
 */
import { shortFingerprint } from '../fingerprint.ts';
import { curvesSpec, plottableCurves, renderVegaLite, thinCurves } from './charts.ts';
import type { ReportData, StageReport } from './collect.ts';
import { dagSvg, describeStage } from './dag.ts';
import type { Cell, FragmentBlock } from './fragment.ts';
import { escapeHtml } from './html-escape.ts';

const STYLE = `
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure.chart { margin: 8px 0 16px; overflow-x: auto; } figcaption { font-weight: bold; margin-bottom: 4px; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
.problems li { color: #a00; } .note { color: #555; font-size: 13px; }
`;

function cell(value: Cell): string {
  if (typeof value === 'number') return `<td class="num">${Number.isInteger(value) ? value : value.toFixed(4)}</td>`;
  return `<td>${value === null ? '–' : escapeHtml(String(value))}</td>`;
}

export function tableHtml(columns: readonly string[], rows: readonly Cell[][]): string {
  const head = `<tr>${columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>`;
  return `<table>${head}${rows.map((row) => `<tr>${row.map(cell).join('')}</tr>`).join('')}</table>`;
}

/** A chart figure; the `data-chart` attribute lets a test check that every chart has its SVG. */
function figure(title: string, svg: string): string {
  return `<figure class="chart" data-chart="${escapeHtml(title)}"><figcaption>${escapeHtml(title)}</figcaption>${svg}</figure>`;
}

async function blockHtml(block: FragmentBlock, stage: string, problems: string[]): Promise<string> {
  switch (block.type) {
    case 'table':
      return `<h3>${escapeHtml(block.title)}</h3>${tableHtml(block.columns, block.rows)}${block.note ? `<p class="note">${escapeHtml(block.note)}</p>` : ''}`;
    case 'chart':
      // A stage's bad spec costs its chart, not the report.
      try {
        return figure(block.title, await renderVegaLite(block.spec));
      } catch (error) {
        problems.push(`${stage}: chart "${block.title}" could not be rendered: ${(error as Error).message}`);
        return `<p class="problems">Chart "${escapeHtml(block.title)}" could not be rendered (see Problems).</p>`;
      }
    case 'texts':
      return `<h3>${escapeHtml(block.title)}</h3>${block.items.map((item) => `<details open><summary>${escapeHtml(item.heading)}</summary><pre>${escapeHtml(item.text)}</pre></details>`).join('')}`;
  }
}

function stagesTable(stages: readonly StageReport[]): string {
  return tableHtml(
    ['stage', 'type', 'state', 'duration (s)', 'cache hit', 'artifact', 'decision'],
    stages.map((s) => [s.name, s.type, s.state, s.durationS === null ? null : Number(s.durationS.toFixed(2)), s.cached ? 'yes' : 'no', s.fingerprint ? shortFingerprint(s.fingerprint) : null, s.decision]),
  );
}

function summaryMetricsTable(stages: readonly StageReport[]): string {
  const rows: Cell[][] = stages.flatMap((s) =>
    Object.entries(s.manifest?.metrics ?? {})
      .filter(([, v]) => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean')
      .map(([key, value]) => [s.name, key, value as Cell]),
  );
  return rows.length === 0 ? '<p class="meta">No stage reported summary metrics.</p>' : tableHtml(['stage', 'metric', 'value'], rows);
}

/** Points per curve in the SVG (see thinCurves). */
const CURVE_POINTS = 400;

export interface RenderedReport {
  html: string;
  /** Charts embedded (curves and fragment charts); the DAG is not counted. */
  charts: number;
}

export async function renderReport(data: ReportData, generated: Date): Promise<RenderedReport> {
  const curveSections: string[] = [];
  for (const stage of data.stages) {
    const points = thinCurves(plottableCurves(stage.curves), CURVE_POINTS);
    if (points.length === 0) continue;
    curveSections.push(figure(`${stage.name}: metrics.jsonl`, await renderVegaLite(curvesSpec(points))));
  }
  const fragmentSections: string[] = [];
  for (const stage of data.stages) {
    if (!stage.fragment) continue;
    const blocks: string[] = [];
    for (const block of stage.fragment.blocks) {
      blocks.push(await blockHtml(block, stage.name, data.problems));
    }
    fragmentSections.push(`<section class="fragment" data-stage="${escapeHtml(stage.name)}"><h2>${escapeHtml(`${stage.fragment.title} (${stage.name})`)}</h2>${blocks.join('\n')}</section>`);
  }
  const run = data.run ? `last run ${escapeHtml(data.run.status)}, ${escapeHtml(data.run.started)} – ${escapeHtml(data.run.finished)}` : 'no run recorded';
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(`${data.pipeline}: pipeline report`)}</title><style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(data.pipeline)}</h1>
<p class="meta">${run} · config ${escapeHtml(data.configFile)} · store ${escapeHtml(data.storeRoot)} · generated ${generated.toISOString()}</p>
<h2>Pipeline</h2>
${figure('DAG', dagSvg(data.stages))}
${stagesTable(data.stages)}
<p class="note">${data.stages.map((s) => `${escapeHtml(s.name)}: ${escapeHtml(describeStage(s))}`).join(' · ')}</p>
<h2>Curves</h2>
${curveSections.length > 0 ? curveSections.join('\n') : '<p class="meta">No stage wrote a curve (metrics.jsonl with two or more points of a key).</p>'}
<h2>Summary metrics</h2>
${summaryMetricsTable(data.stages)}
${fragmentSections.join('\n')}
${data.problems.length > 0 ? `<h2>Problems</h2><ul class="problems">${data.problems.map((p) => `<li>${escapeHtml(p)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
  // Rendered charts: every figure but the DAG's (a chart that failed has no figure).
  return { html, charts: (html.match(/<figure class="chart"/g) ?? []).length - 1 };
}
