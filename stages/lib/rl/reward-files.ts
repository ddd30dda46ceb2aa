/**
 * User reward files run in a worker thread (reward-worker.ts), never on the main thread:
 * - a reward stuck in a loop cannot block the run's SIGINT/SIGTERM handling: cancellation
 *   terminates the worker, and the stage fails as cancelled (nothing is published);
 * - each call has a time limit: past it the worker is terminated and the stage fails with an error
 *   naming the reward and its file.
 * One worker serves every reward file of a stage, and each call carries a whole batch (a GRPO step's
 * completions), so the thread hop costs one message per reward per step, not one per completion.
 *
 * A worker is not a sandbox: a reward file is trusted code with the pipeline's own access to files,
 * network and environment (README, "Reward files and user stages are trusted code").
 */
import { Worker } from 'node:worker_threads';

/** How long one call (one batch) may take unless the reward sets `timeout_s`; its import gets at least this. */
export const DEFAULT_REWARD_TIMEOUT_S = 60;

type RewardRequest = { type: 'load'; file: string } | { type: 'call'; file: string; batch: unknown[]; params: unknown };
export type RewardToWorker = RewardRequest & { id: number };

export type RewardFromWorker =
  | { type: 'loaded'; id: number }
  | { type: 'values'; id: number; values: unknown }
  | { type: 'failed'; id: number; message: string };

/** A reward file's failure that must not be retried example by example: a timeout, a cancel, a dead worker. */
export class RewardWorkerStopped extends Error {}

export interface CallLimits {
  /** Names the reward in errors: `reward rule-citation (./rewards/rule-citation.ts)`. */
  label: string;
  timeoutS: number;
  signal?: AbortSignal;
}

interface Pending {
  resolve: (message: RewardFromWorker) => void;
  reject: (error: Error) => void;
}

export class RewardWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  /** Why the worker is gone, once it is: every later request fails with it. */
  private stopped: Error | undefined;
  /** The rewards loaded, to name them when the thread dies outside any one call. */
  private readonly labels: string[] = [];

  constructor() {
    this.worker = new Worker(new URL('./reward-worker.mjs', import.meta.url));
    // Requests keep the process alive through their timers; an idle worker must not.
    this.worker.unref();
    this.worker.on('message', (message: RewardFromWorker) => {
      const waiting = this.pending.get(message.id);
      this.pending.delete(message.id);
      waiting?.resolve(message);
    });
    this.worker.on('error', (error) => this.stop(new RewardWorkerStopped(`the worker running ${this.running()} crashed: ${error.message}`)));
    this.worker.on('exit', (code) => this.stop(new RewardWorkerStopped(`the worker running ${this.running()} exited (code ${code})`)));
  }

  /** Imports a reward file in the worker; resolves with the failure's message, or undefined when it loaded. */
  async load(file: string, limits: CallLimits): Promise<string | undefined> {
    // Starting the worker and transpiling the file come first, so a short per-call limit is not
    // applied to the import: it gets at least the default.
    this.labels.push(limits.label);
    const answer = await this.request({ type: 'load', file }, { ...limits, timeoutS: Math.max(limits.timeoutS, DEFAULT_REWARD_TIMEOUT_S) }, 'to load');
    return answer.type === 'failed' ? answer.message : undefined;
  }

  /** Calls a loaded reward file on a batch; a throw inside the reward rejects with its message. */
  async call(file: string, batch: unknown[], params: unknown, limits: CallLimits): Promise<unknown> {
    const answer = await this.request({ type: 'call', file, batch, params }, limits, `on a batch of ${batch.length}`);
    if (answer.type === 'failed') throw new Error(answer.message);
    return answer.type === 'values' ? answer.values : undefined;
  }

  async close(): Promise<void> {
    this.stop(new RewardWorkerStopped('the reward worker was closed'));
    await this.worker.terminate();
  }

  private request(message: RewardRequest, limits: CallLimits, what: string): Promise<RewardFromWorker> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(this.stopped);
      if (limits.signal?.aborted) return reject(limits.signal.reason as Error);
      const id = this.nextId++;
      const onAbort = () => {
        // The run was cancelled (SIGINT/SIGTERM): stop the reward wherever it is.
        reject(limits.signal?.reason as Error);
        this.stop(new RewardWorkerStopped(`${limits.label} was stopped: the run was cancelled`));
      };
      const timer = setTimeout(() => {
        this.stop(new RewardWorkerStopped(`${limits.label} did not answer within ${limits.timeoutS} s ${what}: it was stopped (raise its timeout_s if it needs longer)`));
      }, limits.timeoutS * 1000);
      const settle = () => {
        clearTimeout(timer);
        limits.signal?.removeEventListener('abort', onAbort);
      };
      limits.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (answer) => (settle(), resolve(answer)),
        reject: (error) => (settle(), reject(error)),
      });
      try {
        this.worker.postMessage({ ...message, id });
      } catch (error) {
        // A batch or params that cannot be copied to the thread (a function in `with:`, say).
        this.pending.delete(id);
        settle();
        reject(new Error(`${limits.label}: cannot pass the ${message.type === 'call' ? 'batch and params' : 'request'} to the reward worker: ${(error as Error).message}`));
      }
    });
  }

  private running(): string {
    return this.labels.join(', ') || 'no reward yet';
  }

  /** Fails every waiting request with `reason` and terminates the thread (a loop cannot refuse). */
  private stop(reason: Error): void {
    if (this.stopped) return;
    this.stopped = reason;
    for (const waiting of this.pending.values()) waiting.reject(reason);
    this.pending.clear();
    void this.worker.terminate();
  }
}
