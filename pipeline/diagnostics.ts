/**
 * Expected failures (bad config, bad flags, missing artifacts) are values: a list of diagnostics,
 * all printed together, each pointing at `file:line:col` with the source line and a marker.
 */
import { closest, distance } from 'fastest-levenshtein';
import type { LineCounter } from 'yaml';

export interface SourceFile {
  /** As the user named it, so messages read like the command they typed. */
  displayPath: string;
  text: string;
  lines: LineCounter;
}

/** A span in a file, or something that has no file position (a `--set` flag). */
export type Location = { file: SourceFile; start: number; end: number } | { origin: string };

export type KeyPath = readonly (string | number)[];

export interface Diagnostic {
  location?: Location;
  /** The key path the problem is about, e.g. stages.sft.with.learning_rate. */
  path?: KeyPath;
  message: string;
  notes?: { location?: Location; message: string }[];
  /** 'warning': reported, but the config still loads (a renamed key). Absent: an error. */
  severity?: 'warning';
}

/** Thrown by code far from the CLI; the CLI prints the diagnostics and exits 2. */
export class DiagnosticsError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map((d) => d.message).join('\n'));
  }
}

export function formatKeyPath(path: KeyPath): string {
  let text = '';
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? segment : `.${segment}`;
  }
  return text;
}

/** ` (did you mean "x"?)` when some candidate is close enough to be a likely typo, else ''. */
export function didYouMean(found: string, candidates: Iterable<string>): string {
  const list = [...candidates];
  if (list.length === 0) return '';
  const best = closest(found, list);
  // A third of the length (at least 2 edits) catches typos and case slips, not unrelated words.
  const limit = Math.max(2, Math.floor(best.length / 3));
  return distance(found, best) <= limit ? ` (did you mean "${best}"?)` : '';
}

function formatLocation(location: Location | undefined): { prefix: string; snippet: string[] } {
  if (!location) return { prefix: '', snippet: [] };
  if ('origin' in location) return { prefix: `${location.origin}: `, snippet: [] };
  const { file, start, end } = location;
  const pos = file.lines.linePos(start);
  const lineText = file.text.split(/\r?\n/)[pos.line - 1] ?? '';
  const width = Math.max(1, Math.min(end - start, lineText.length - (pos.col - 1)));
  const gutter = String(pos.line);
  const pad = ' '.repeat(gutter.length);
  return {
    prefix: `${file.displayPath}:${pos.line}:${pos.col}: `,
    snippet: [` ${gutter} | ${lineText}`, ` ${pad} | ${' '.repeat(pos.col - 1)}${'^'.repeat(width)}`],
  };
}

export function formatDiagnostic(diagnostic: Diagnostic): string {
  const { prefix, snippet } = formatLocation(diagnostic.location);
  const keyPath = diagnostic.path && diagnostic.path.length > 0 ? `${formatKeyPath(diagnostic.path)}: ` : '';
  const lines = [`${prefix}${diagnostic.severity ?? 'error'}: ${keyPath}${diagnostic.message}`, ...snippet];
  for (const note of diagnostic.notes ?? []) {
    const located = formatLocation(note.location);
    lines.push(`  ${located.prefix}note: ${note.message}`, ...located.snippet.map((line) => `  ${line}`));
  }
  return lines.join('\n');
}

/** Flag problems first, then in file order; the same problem reported twice (YAML does) shows once. */
export function formatDiagnostics(diagnostics: readonly Diagnostic[]): string {
  const position = (d: Diagnostic) => (!d.location ? -2 : 'origin' in d.location ? -1 : d.location.start);
  const sorted = [...diagnostics].sort((a, b) => position(a) - position(b));
  const texts = [...new Map(sorted.map((d) => [formatDiagnostic(d), d.severity ?? 'error'])).entries()];
  const count = (severity: string) => texts.filter(([, s]) => s === severity).length;
  const counted = (['error', 'warning'] as const).map((s) => ({ n: count(s), s })).filter(({ n }) => n > 0);
  return `${texts.map(([text]) => text).join('\n')}\n${counted.map(({ n, s }) => `${n} ${s}${n === 1 ? '' : 's'}`).join(', ')}`;
}
