/**
 * The Slurm jobs of a pipeline, kept in the store at `runs/<pipeline>/slurm-jobs.json` so that
 * `pipeline status` (and a user with `squeue`/`sacct`) can find them after the run that submitted
 * them is gone. One entry per stage: its latest job and the ids of every attempt.
 */
import * as path from 'node:path';
import type { PlannedStage } from '../plan.ts';
import type { StageState } from '../executor/types.ts';
import { readJson, writeFileAtomic } from '../store/fs-util.ts';
import type { ArtifactStore } from '../store/store.ts';
import { classifyState } from './job-state.ts';
import { SlurmClient } from './slurm-client.ts';

export interface StageJobRecord {
  fingerprint: string;
  jobId: string;
  attempt: number;
  /** Every job id submitted for this fingerprint, oldest first (retries add ids). */
  jobIds: string[];
  /** Last Slurm state seen by the submitting run (SUBMITTED before the first poll). */
  state: string;
  /** How the submitting run ended the stage, once it did. */
  result?: StageState;
  afterOk: string[];
  stdout: string;
  stderr: string;
  submitted: string;
}

export interface SlurmJobsFile {
  updated: string;
  jobs: Record<string, StageJobRecord>;
}

export function slurmJobsPath(store: ArtifactStore, pipeline: string): string {
  return path.join(store.runsDir(pipeline), 'slurm-jobs.json');
}

export function readSlurmJobs(store: ArtifactStore, pipeline: string): Promise<SlurmJobsFile | undefined> {
  return readJson<SlurmJobsFile>(slurmJobsPath(store, pipeline));
}

/** Keeps the file up to date during a run; writes are queued so they land in call order. */
export class JobRecorder {
  private file: Promise<SlurmJobsFile>;
  private writes: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: ArtifactStore,
    private readonly pipeline: string,
  ) {
    this.file = readSlurmJobs(store, pipeline).then((file) => file ?? { updated: '', jobs: {} });
  }

  record(stage: PlannedStage, job: Pick<StageJobRecord, 'jobId' | 'attempt' | 'state' | 'afterOk' | 'stdout' | 'stderr'>): void {
    this.change((file) => {
      const previous = file.jobs[stage.name];
      const earlier = previous?.fingerprint === stage.fingerprint ? previous.jobIds : [];
      file.jobs[stage.name] = { fingerprint: stage.fingerprint, ...job, jobIds: [...earlier, job.jobId], submitted: new Date().toISOString() };
    });
  }

  update(stage: string, state: string): void {
    this.change((file) => {
      const entry = file.jobs[stage];
      if (entry) entry.state = state;
    });
  }

  /** Local stages have no entry; only jobs get their result recorded. */
  finish(stage: string, result: StageState): void {
    this.change((file) => {
      const entry = file.jobs[stage];
      if (entry && entry.result === undefined) entry.result = result;
    });
  }

  flush(): Promise<void> {
    return this.writes;
  }

  private change(edit: (file: SlurmJobsFile) => void): void {
    this.writes = this.writes.then(async () => {
      const file = await this.file;
      edit(file);
      file.updated = new Date().toISOString();
      await writeFileAtomic(slurmJobsPath(this.store, this.pipeline), `${JSON.stringify(file, null, 2)}\n`);
    });
  }
}

/**
 * Lines for `pipeline status`: each stage's latest job with its state now (asked of Slurm for jobs
 * the record does not show as ended), e.g. `sft: job 41 RUNNING (attempt 1)`.
 */
export async function describeSlurmJobs(store: ArtifactStore, pipeline: string, client: SlurmClient): Promise<string[]> {
  const file = await readSlurmJobs(store, pipeline);
  if (!file) return [];
  const entries = Object.entries(file.jobs);
  const open = entries.filter(([, job]) => job.result === undefined || !classifyState(job.state).final).map(([, job]) => job.jobId);
  let live = new Map<string, { state: string }>();
  let note = '';
  try {
    live = await client.states(open);
  } catch (error) {
    note = ` (recorded state; Slurm not reachable: ${(error as Error).message.split('\n')[0]})`;
  }
  return entries.map(([stage, job]) => {
    const state = live.get(job.jobId)?.state ?? job.state;
    const attempts = job.jobIds.length > 1 ? `, attempts ${job.jobIds.join(', ')}` : '';
    return `${stage}: job ${job.jobId} ${state} (attempt ${job.attempt}${attempts})${live.has(job.jobId) ? '' : note}`;
  });
}

/** `pipeline status`'s Slurm section: nothing when this pipeline never ran a job. */
export async function slurmStatusLines(store: ArtifactStore, pipeline: string): Promise<string[]> {
  const lines = await describeSlurmJobs(store, pipeline, new SlurmClient());
  return lines.length > 0 ? ['slurm jobs:', ...lines.map((line) => `  ${line}`)] : [];
}
