/**
 * What a run shows while stages execute. On a TTY: a live list of the stages being built with
 * their state, elapsed time and the running stages' progress bars (redrawn in place by log-update).
 * Otherwise (CI, pipes): plain timestamped lines for state changes and warnings, and the running
 * stages' progress at most every `intervalMs`, never one line per progress update. Stage warnings
 * show in both.
 */
import type { StageEvent, StageState } from '../executor/types.ts';

export interface RunDisplay {
  event(event: StageEvent): void;
  /** A message that must stay on screen (e.g. "stopping ..."). */
  message(text: string): void;
  stop(): void;
}

interface Row {
  state: 'waiting' | 'running' | StageState;
  started?: number;
  finished?: number;
  progress?: { done: number; total: number; unit?: string };
}

function elapsed(row: Row, now: number): string {
  if (row.started === undefined) return '';
  return `${(((row.finished ?? now) - row.started) / 1000).toFixed(1)}s`;
}

export function progressText(progress: Row['progress'], barWidth = 0): string {
  if (!progress || progress.total <= 0) return '';
  const fraction = Math.min(1, progress.done / progress.total);
  const bar = barWidth > 0 ? `[${'#'.repeat(Math.round(fraction * barWidth)).padEnd(barWidth, '.')}] ` : '';
  return `${bar}${progress.done}/${progress.total}${progress.unit ? ` ${progress.unit}` : ''} (${Math.floor(fraction * 100)}%)`;
}

function track(stages: readonly string[]) {
  const rows = new Map<string, Row>(stages.map((stage) => [stage, { state: 'waiting' }]));
  const apply = (event: StageEvent): Row | undefined => {
    const name = event.type === 'end' ? event.result.stage : event.stage;
    const row = rows.get(name) ?? { state: 'waiting' };
    rows.set(name, row);
    if (event.type === 'start') Object.assign(row, { state: 'running', started: event.time });
    else if (event.type === 'progress') row.progress = { done: event.done, total: event.total, unit: event.unit };
    else if (event.type === 'end') Object.assign(row, { state: event.result.state, finished: Date.now(), started: row.started ?? Date.now() });
    return row;
  };
  return { rows, apply };
}

const SYMBOL: Record<Row['state'], string> = {
  waiting: '·',
  running: '>',
  succeeded: '✓',
  failed: '✗',
  skipped: '-',
  cancelled: '!',
};

/** log-update is imported here, not at the top: runs without a TTY (CI) never pay for loading it. */
export async function ttyDisplay(stages: readonly string[], stream: NodeJS.WriteStream = process.stderr): Promise<RunDisplay> {
  const { createLogUpdate } = await import('log-update');
  const { rows, apply } = track(stages);
  const render = createLogUpdate(stream);
  const draw = () => {
    const now = Date.now();
    const width = Math.max(...stages.map((s) => s.length), 4);
    render(
      [...rows]
        .map(([name, row]) => `${SYMBOL[row.state]} ${name.padEnd(width)} ${row.state.padEnd(9)} ${elapsed(row, now).padStart(7)} ${row.state === 'running' ? progressText(row.progress, 24) : ''}`.trimEnd())
        .join('\n'),
    );
  };
  const timer = setInterval(draw, 100);
  timer.unref();
  // Written above the live list, which is redrawn below it.
  const message = (text: string) => {
    render.clear();
    stream.write(`${text}\n`);
    draw();
  };
  return {
    event(event) {
      apply(event);
      if (event.type === 'warning') message(`${event.stage}: warning: ${event.message}`);
    },
    message,
    stop() {
      clearInterval(timer);
      draw();
      render.done();
    },
  };
}

export function plainDisplay(
  stages: readonly string[],
  write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  intervalMs = 10_000,
): RunDisplay {
  const { rows, apply } = track(stages);
  const say = (text: string) => write(`${new Date().toISOString()} ${text}`);
  const lastLine = new Map<string, number>();
  const report = (name: string, row: Row) => {
    lastLine.set(name, Date.now());
    say(`${name}: running ${elapsed(row, Date.now())} ${progressText(row.progress)}`.trimEnd());
  };
  // The timer covers stages that report no progress; a training step is synchronous and starves
  // timers, so progress events also print when a line is due.
  const timer = setInterval(() => {
    for (const [name, row] of rows) {
      if (row.state === 'running' && Date.now() - (lastLine.get(name) ?? 0) >= intervalMs) report(name, row);
    }
  }, intervalMs);
  timer.unref();
  return {
    event(event) {
      const row = apply(event);
      if (!row) return;
      if (event.type === 'progress' && row.state === 'running' && Date.now() - (lastLine.get(event.stage) ?? 0) >= intervalMs) {
        report(event.stage, row);
      }
      if (event.type === 'start') {
        lastLine.set(event.stage, Date.now());
        say(`${event.stage}: started`);
      }
      else if (event.type === 'warning') say(`${event.stage}: warning: ${event.message}`);
      else if (event.type === 'end') {
        const { result } = event;
        const time = result.state === 'skipped' ? '' : ` in ${result.durationS.toFixed(1)}s`;
        say(`${result.stage}: ${result.state}${time}${result.message ? ` (${result.message})` : ''}`);
      }
    },
    message: say,
    stop() {
      clearInterval(timer);
    },
  };
}
