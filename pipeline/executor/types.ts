/**
 * How planned work gets executed: the seam between the orchestrator and an executor (local
 * in-process, or Slurm in `pipeline/slurm/`).
 *
 * The contract:
 * - `pipeline run` loads and validates the config, plans it (fingerprints + decisions), takes the
 *   store lock, and hands ONE executor the stages whose work is needed (`request.stages`, in
 *   topological order). The executor is the top-level `executor:` unless a stage to build says
 *   `executor: slurm`, in which case the Slurm executor gets the whole request and runs the stages
 *   whose `executor` is `local` itself, in-process, with `runStageInProcess` (pipeline/executor/run-stage.ts).
 * - A stage's `needs` are either in `request.stages` (build them first; a remote executor expresses
 *   that as job dependencies, e.g. afterok) or already published in the store.
 * - Building one stage = `runStageInProcess(plan, stage, ...)`: it makes the work folder, runs the
 *   stage, writes the manifest, publishes the artifact (rename) and moves the ref. A remote job does
 *   exactly this by running the command from `runStageCommand(plan, stage, lockToken)`, i.e.
 *   `pipeline run-stage <config> <stage> --store DIR --set ... --lock-token T --expect-fingerprint FP`,
 *   which re-plans from the same config and overrides, so the fingerprint is the one the submitting
 *   run computed (the command fails, exit 2, if the node sees different files).
 * - Locking: the submitting run holds the store lock for its whole duration. Its lock file carries
 *   `lockToken`; `run-stage --lock-token T` proceeds without taking the lock when the current holder's
 *   token is T, so child jobs never deadlock with their parent, while a stray `run-stage` without
 *   the token waits like any other run.
 * - The executor reports through `emit`: one `start` when a stage begins, any `progress`, and one
 *   `end` per stage it was given (succeeded, failed, skipped because an upstream stage failed or
 *   `onError: fail` stopped the run, or cancelled by `signal`). `execute` resolves with those same
 *   results, one per stage in `request.stages`; it rejects only on a bug.
 * - On `signal` abort: stop starting stages, stop running ones (kill jobs / child processes), publish
 *   nothing that did not finish, and resolve with the results so far.
 */
import type { ArtifactStore } from '../store/store.ts';
import type { Plan, PlannedStage } from '../plan.ts';

export type OnError = 'fail' | 'keep-going';

export interface ExecutionRequest {
  plan: Plan;
  /** The stages to build, topologically ordered. */
  stages: readonly PlannedStage[];
  store: ArtifactStore;
  /** Token of the store lock this run holds; pass it to `run-stage` (see `runStageCommand`). */
  lockToken: string;
  /** Most stages running at once (all classes). `train` stages are further limited by `plan.config.resources.train`. */
  concurrency: number;
  onError: OnError;
  signal: AbortSignal;
  emit(event: StageEvent): void;
}

export type StageState = 'succeeded' | 'failed' | 'skipped' | 'cancelled';

export interface StageResult {
  stage: string;
  fingerprint: string;
  state: StageState;
  durationS: number;
  /** The stage log file (absolute path). */
  logPath: string;
  /** For `failed`: the error message. For `skipped`: why (e.g. `upstream sft failed`). */
  message?: string;
}

export type StageEvent =
  | { type: 'start'; stage: string; time: number }
  | { type: 'progress'; stage: string; done: number; total: number; unit?: string }
  /** A stage's `log.warn`: it goes to the stage log and, so that nobody has to open the log to see it, on screen. */
  | { type: 'warning'; stage: string; message: string }
  | { type: 'end'; result: StageResult };

export interface Executor {
  readonly name: string;
  execute(request: ExecutionRequest): Promise<StageResult[]>;
}
