/**
 * The Slurm commands the executor uses (sbatch, squeue, sacct, scancel) and parsers of their
 * output. Commands run with the caller's environment, so SLURM_CONF and PATH apply as in a shell.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { classifyState } from './job-state.ts';

const execFileAsync = promisify(execFile);

/** One job's state as a Slurm command reported it. */
export interface JobStateRow {
  jobId: string;
  state: string;
  /** squeue's reason (e.g. `Dependency`, `DependencyNeverSatisfied`), when known. */
  reason?: string;
  /** sacct's `code:signal`, when known. */
  exitCode?: string;
}

/** Runs a command and returns its stdout; a failure is an error carrying the command's stderr. */
export type RunCommand = (file: string, args: readonly string[], stdin?: string) => Promise<string>;

export const runCommand: RunCommand = async (file, args, stdin) => {
  try {
    if (stdin === undefined) return (await execFileAsync(file, [...args], { maxBuffer: 16 << 20 })).stdout;
    return await new Promise<string>((resolve, reject) => {
      const child = execFile(file, [...args], { maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
        error ? reject(Object.assign(error, { stderr })) : resolve(stdout),
      );
      child.stdin?.end(stdin);
    });
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new Error(`slurm: ${file} not found on PATH; is this a Slurm submit host?`);
    const detail = (failure.stderr ?? '').trim() || failure.message;
    throw new SlurmCommandError(`${file} ${args.join(' ')} failed: ${detail}`, detail);
  }
};

export class SlurmCommandError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'SlurmCommandError';
  }
}

/** `sbatch --parsable` prints `<jobid>` or `<jobid>;<cluster>`. */
export function parseSbatchOutput(stdout: string): string {
  const jobId = stdout.trim().split(/\r?\n/).pop()?.split(';')[0]?.trim() ?? '';
  if (!/^\d+(_\d+)?$/.test(jobId)) throw new Error(`slurm: sbatch printed no job id (output: ${JSON.stringify(stdout.trim())})`);
  return jobId;
}

/** Output of `squeue -h -o %i|%T|%r`. */
export function parseSqueueOutput(stdout: string): JobStateRow[] {
  return nonEmptyLines(stdout).map((line) => {
    const [jobId = '', state = '', reason = ''] = line.split('|');
    return { jobId: jobId.trim(), state: state.trim(), reason: reason.trim() || undefined };
  });
}

/**
 * Output of `sacct -n -P -o JobID,State,ExitCode`. Steps (`12.batch`, `12.0`) are skipped; when a
 * job appears more than once (a requeued job, or several completion records), the last row wins.
 */
export function parseSacctOutput(stdout: string): JobStateRow[] {
  const byJob = new Map<string, JobStateRow>();
  for (const line of nonEmptyLines(stdout)) {
    const [jobId = '', state = '', exitCode = ''] = line.split('|').map((field) => field.trim());
    if (jobId.includes('.') || state === '') continue;
    byJob.set(jobId, { jobId, state, exitCode: exitCode || undefined });
  }
  return [...byJob.values()];
}

function nonEmptyLines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => line.trim() !== '');
}

const SACCT_PATIENCE = 5;
const ACCOUNTING_DISABLED = /accounting storage is disabled/i;

export class SlurmClient {
  /** Whether sacct must read the job completion file (`sacct -c`): no accounting database. */
  private sacctFromCompletionLog: boolean | undefined;
  /** Job id -> polls in which squeue said "ended" but sacct had no record. */
  private readonly sacctMisses = new Map<string, number>();

  constructor(private readonly run: RunCommand = runCommand) {}

  /** Submits a batch script (on stdin) and returns the job id. */
  async submit(script: string): Promise<string> {
    return parseSbatchOutput(await this.run('sbatch', ['--parsable'], script));
  }

  /**
   * The state of each job id. squeue knows queued, running and recently ended jobs; final states
   * come from sacct, which falls back to `sacct -c` (the job completion log) where accounting is
   * off. A job neither command knows is absent from the result (e.g. not yet written to the
   * completion log): callers keep asking. A cluster that records no completions at all would
   * leave such jobs unknown forever, so after `SACCT_PATIENCE` polls squeue's final state is used.
   */
  async states(jobIds: readonly string[]): Promise<Map<string, JobStateRow>> {
    const result = new Map<string, JobStateRow>();
    if (jobIds.length === 0) return result;
    const queued = await this.squeue(jobIds);
    const needFinal = jobIds.filter((id) => {
      const row = queued.get(id);
      return row === undefined || !isActiveQueueState(row.state);
    });
    const finals = await this.sacct(needFinal);
    for (const id of jobIds) {
      const queuedRow = queued.get(id);
      const finalRow = finals.get(id);
      if (finalRow) {
        result.set(id, { ...finalRow, reason: queuedRow?.reason });
        this.sacctMisses.delete(id);
      } else if (queuedRow && isActiveQueueState(queuedRow.state)) {
        result.set(id, queuedRow);
      } else if (queuedRow) {
        // Ended, but not (yet) in sacct: wait a few polls rather than report a state sacct may correct.
        const misses = (this.sacctMisses.get(id) ?? 0) + 1;
        this.sacctMisses.set(id, misses);
        if (misses >= SACCT_PATIENCE) result.set(id, queuedRow);
      }
    }
    return result;
  }

  async cancel(jobIds: readonly string[]): Promise<void> {
    if (jobIds.length > 0) await this.run('scancel', [...jobIds]);
  }

  private async squeue(jobIds: readonly string[]): Promise<Map<string, JobStateRow>> {
    try {
      const stdout = await this.run('squeue', ['-h', '-t', 'all', '-j', jobIds.join(','), '-o', '%i|%T|%r']);
      return new Map(parseSqueueOutput(stdout).map((row) => [row.jobId, row]));
    } catch (error) {
      // squeue fails when none of the ids is still in the controller's memory (MinJobAge passed).
      if (error instanceof SlurmCommandError && /invalid job id/i.test(error.stderr)) return new Map();
      throw error;
    }
  }

  private async sacct(jobIds: readonly string[]): Promise<Map<string, JobStateRow>> {
    if (jobIds.length === 0) return new Map();
    const args = ['-n', '-P', '-j', jobIds.join(','), '-o', 'JobID,State,ExitCode'];
    if (this.sacctFromCompletionLog !== true) {
      try {
        const rows = parseSacctOutput(await this.run('sacct', ['-X', ...args]));
        this.sacctFromCompletionLog = false;
        return new Map(rows.map((row) => [row.jobId, row]));
      } catch (error) {
        if (!(error instanceof SlurmCommandError && ACCOUNTING_DISABLED.test(error.stderr))) throw error;
        this.sacctFromCompletionLog = true;
      }
    }
    const rows = parseSacctOutput(await this.run('sacct', ['-c', ...args]));
    return new Map(rows.map((row) => [row.jobId, row]));
  }
}

/** A job squeue shows as not ended; for any other, the final record is asked of sacct. */
function isActiveQueueState(state: string): boolean {
  return !classifyState(state).final;
}
