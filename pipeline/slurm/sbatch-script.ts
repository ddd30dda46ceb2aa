/**
 * Renders the batch script of one stage job. Every sbatch option is a `#SBATCH` line rather than a
 * command-line flag, so the script saved next to the job's logs is the whole truth about the job
 * and can be resubmitted by hand (`sbatch <script>`) when debugging on the cluster.
 */
import { quote } from 'shell-quote';
import type { SlurmConfig } from '../config/schema.ts';

export interface SbatchJob {
  /** Slurm job name (squeue's NAME column), e.g. `lore.sft`. */
  name: string;
  /** The stage's Slurm settings, per-stage overrides already applied. */
  slurm: SlurmConfig;
  /** argv of the command the job runs; the first element should be an absolute path. */
  command: readonly string[];
  /** Folder the job starts in (on the shared filesystem). */
  workDir: string;
  /** Log paths; `%j` is replaced by Slurm with the job id. */
  stdoutPath: string;
  stderrPath: string;
  /** Job ids that must complete successfully first (`--dependency=afterok:...`). */
  afterOk: readonly string[];
  /** Exported in the script, on top of the submitting environment that sbatch passes on by default. */
  env: Readonly<Record<string, string>>;
}

export function renderSbatchScript(job: SbatchJob): string {
  const { slurm } = job;
  const options: string[] = [`--job-name=${job.name}`, '--parsable'];
  if (slurm.partition !== undefined) options.push(`--partition=${slurm.partition}`);
  if (slurm.account !== undefined) options.push(`--account=${slurm.account}`);
  options.push(`--time=${slurm.time}`, `--cpus-per-task=${slurm.cpus}`, `--mem=${slurm.mem}`);
  // --gres rather than --gpus: it works on clusters whose GPUs are not configured as TRES types.
  if (slurm.gpus > 0) options.push(`--gres=gpu:${slurm.gpus}`);
  options.push(`--chdir=${job.workDir}`, `--output=${job.stdoutPath}`, `--error=${job.stderrPath}`);
  if (job.afterOk.length > 0) {
    options.push(`--dependency=afterok:${job.afterOk.join(':')}`);
    // Without it, on clusters not configured with kill_invalid_depend, a job after a failed one
    // pends forever instead of being cancelled.
    options.push('--kill-on-invalid-dep=yes');
  }
  options.push(...groupExtraArgs(slurm.extra_args));

  const lines = ['#!/bin/bash', ...options.map((option) => `#SBATCH ${sbatchOptionText(option)}`), 'set -euo pipefail'];
  for (const [name, value] of Object.entries(job.env).sort(([a], [b]) => a.localeCompare(b))) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`slurm: invalid environment variable name ${JSON.stringify(name)}`);
    lines.push(`export ${name}=${quote([value])}`);
  }
  // exec: the stage process receives Slurm's signals (scancel, time limit) directly.
  lines.push(`exec ${quote([...job.command])}`);
  return `${lines.join('\n')}\n`;
}

/**
 * `extra_args: ["--qos", "high", "--exclusive"]` -> ["--qos high", "--exclusive"]: a word that does
 * not start with "-" is the value of the option before it, as on sbatch's command line.
 */
function groupExtraArgs(extraArgs: readonly string[]): string[] {
  const grouped: string[] = [];
  extraArgs.forEach((arg, index) => {
    if (arg.startsWith('-')) grouped.push(arg);
    else if (grouped.length > 0) grouped[grouped.length - 1] += ` ${arg}`;
    else throw new Error(`slurm.extra_args[${index}]: ${JSON.stringify(arg)} is not an sbatch option (options start with "-")`);
  });
  return grouped;
}

/**
 * sbatch reads `#SBATCH` lines up to the end of line and honours double quotes around a value, so
 * a value with spaces is quoted; a newline or a double quote inside a value cannot be expressed.
 */
function sbatchOptionText(option: string): string {
  if (/[\n\r"]/.test(option)) throw new Error(`slurm: sbatch option ${JSON.stringify(option)} contains a newline or a double quote`);
  const eq = option.indexOf('=');
  if (eq < 0 || !/\s/.test(option.slice(eq + 1))) return option;
  return `${option.slice(0, eq + 1)}"${option.slice(eq + 1)}"`;
}
