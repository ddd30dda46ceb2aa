/** The pieces of a StageContext that are not plain values: inputs, logger, metrics, progress. */
import { appendFileSync, createWriteStream, type WriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { ArtifactKind, InputArtifact, Inputs, Logger, StepMetricsLog, ProgressReporter } from '../stage-api.ts';

export function makeInputs(stage: string, all: InputArtifact[]): Inputs {
  const names = () => all.map((input) => `${input.stage} (${input.kind})`).join(', ') || 'none';
  return {
    all,
    many: (kind: ArtifactKind) => all.filter((input) => input.kind === kind),
    byStage: (name: string) => all.find((input) => input.stage === name),
    one(kind: ArtifactKind) {
      const found = all.filter((input) => input.kind === kind);
      if (found.length !== 1) {
        throw new Error(`stage ${stage} needs exactly one input of kind "${kind}", found ${found.length}; its inputs: ${names()}`);
      }
      return found[0] as InputArtifact;
    },
  };
}

export interface StageLog extends Logger {
  /** Raw text (a child process's output), written as is. */
  write(text: string): void;
  close(): Promise<void>;
}

export function openStageLog(file: string): StageLog {
  let stream: WriteStream | undefined = createWriteStream(file, { flags: 'w' });
  // A full disk fails the log's writes: the stage goes on (its own writes report the disk) with no
  // log rather than crash the runner with an unhandled stream error.
  stream.on('error', () => {
    stream?.destroy();
    stream = undefined;
  });
  const line = (level: string, message: string) => stream?.write(`${new Date().toISOString()} ${level} ${message}\n`);
  return {
    info: (message) => line('info', message),
    warn: (message) => line('warn', message),
    debug: (message) => line('debug', message),
    write: (text) => stream?.write(text),
    close: () =>
      new Promise<void>((resolve) => {
        if (!stream) return resolve();
        stream.end(resolve);
        stream = undefined;
      }),
  };
}

export const METRICS_FILE = 'metrics.jsonl';

/**
 * Appends synchronously: a line is either written or not when the process is killed, and a
 * resumed stage first drops the lines past its restored step (`truncateMetrics`).
 */
export function stepMetricsLog(outDir: string): StepMetricsLog {
  const file = path.join(outDir, METRICS_FILE);
  return {
    log(step, values) {
      appendFileSync(file, `${JSON.stringify({ step, ...values, time: new Date().toISOString() })}\n`);
    },
  };
}

export async function truncateMetrics(outDir: string, lastStep: number): Promise<void> {
  const file = path.join(outDir, METRICS_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return;
  }
  const kept = text
    .split('\n')
    .filter((line) => {
      if (line.trim() === '') return false;
      try {
        return (JSON.parse(line) as { step: number }).step <= lastStep;
      } catch {
        return false; // a line cut by the kill
      }
    })
    .map((line) => `${line}\n`)
    .join('');
  await fs.writeFile(file, kept);
}

export function progressReporter(report: (done: number, total: number, unit?: string) => void): ProgressReporter {
  return { update: report };
}
