/**
 * What a Slurm job state means for the stage it runs: still going, done, or failed (with a reason a
 * user can act on), and whether the configured retry policy resubmits it.
 *
 * States are those of `squeue -o %T` and `sacct -o State` (Slurm 22.05+; see `man sacct`, "JOB STATE
 * CODES"). sacct may append detail, e.g. "CANCELLED by 0"; only the first word is the state.
 */

export type JobVerdict =
  | { final: false; state: string }
  | { final: true; ok: true; state: 'COMPLETED' }
  | { final: true; ok: false; state: string; reason: string };

/** Job facts the verdict draws on: the limits it ran under and its exit code (`sacct -o ExitCode`). */
export interface JobFacts {
  exitCode?: string;
  time?: string;
  mem?: string;
}

/**
 * States in which the job may still run or publish. COMPLETING is here on purpose: right after
 * scancel (or a normal end) the node is still killing and cleaning up, and the stage may not have
 * published yet.
 */
const NOT_FINAL = new Set([
  'PENDING',
  'CONFIGURING',
  'RUNNING',
  'COMPLETING',
  'SUSPENDED',
  'REQUEUED',
  'REQUEUE_HOLD',
  'REQUEUE_FED',
  'RESIZING',
  'SIGNALING',
  'STAGE_OUT',
  'STOPPED',
  'RESV_DEL_HOLD',
]);

/** Reason text for each failed final state; `facts` fill in the limit that was hit. */
const FAILURE_REASONS: Record<string, (facts: JobFacts) => string> = {
  FAILED: (facts) => `the stage command failed${describeExitCode(facts.exitCode)}`,
  CANCELLED: () => 'the job was cancelled (scancel, an administrator, or an unsatisfiable dependency)',
  TIMEOUT: (facts) => `the job hit its time limit${facts.time ? ` (slurm.time: ${facts.time})` : ''}; raise slurm.time`,
  OUT_OF_MEMORY: (facts) => `the job ran out of memory${facts.mem ? ` (slurm.mem: ${facts.mem})` : ''}; raise slurm.mem`,
  NODE_FAIL: () => 'the node running the job failed',
  PREEMPTED: () => 'the job was preempted by a higher-priority job',
  BOOT_FAIL: () => 'the node failed to boot for the job',
  DEADLINE: () => 'the job missed its deadline',
  REVOKED: () => 'the job was revoked (federated cluster)',
  SPECIAL_EXIT: () => 'the job ended in SPECIAL_EXIT (held after a failed requeue)',
};

/** The bare state word: "CANCELLED by 0" -> "CANCELLED", "completed+" -> "COMPLETED". */
export function normalizeState(raw: string): string {
  return (raw.trim().split(/\s+/)[0] ?? '').replace(/\+$/, '').toUpperCase();
}

export function classifyState(raw: string, facts: JobFacts = {}): JobVerdict {
  const state = normalizeState(raw);
  if (state === 'COMPLETED') return { final: true, ok: true, state };
  if (NOT_FINAL.has(state)) return { final: false, state };
  const reason = FAILURE_REASONS[state];
  return {
    final: true,
    ok: false,
    state,
    reason: reason ? reason(facts) : `the job ended in the unrecognised Slurm state ${JSON.stringify(raw)}`,
  };
}

export interface RetryPolicy {
  /** How many times a job may be resubmitted (0: never). */
  retries: number;
  /** Final states that count as the cluster failing, not the stage. */
  retryOn: readonly string[];
}

/**
 * Whether a failed job is resubmitted. `attempt` counts from 1 (the first submission). Only states
 * the user listed are retried: a FAILED stage would fail again the same way, so retrying it by
 * default would only hide the error for longer.
 */
export function shouldRetry(verdict: JobVerdict, attempt: number, policy: RetryPolicy): boolean {
  if (!verdict.final || verdict.ok) return false;
  return attempt <= policy.retries && policy.retryOn.some((state) => normalizeState(state) === verdict.state);
}

/** sacct ExitCode is "code:signal": "3:0" exited 3, "0:9" killed by signal 9. */
function describeExitCode(exitCode: string | undefined): string {
  const match = exitCode?.match(/^(\d+):(\d+)$/);
  if (!match) return '';
  const [, code, signal] = match;
  if (signal !== '0') return ` (killed by signal ${signal})`;
  return code === '0' ? '' : ` (exit code ${code})`;
}
