/**
 * Dynamic batching for the LLM tier: pairs from concurrent requests wait in one queue; a batch
 * starts when `maxBatch` pairs wait or the oldest has waited `maxWaitMs`, and one batch runs at a
 * time (the model decodes a batch at once). Every pair carries a deadline: past it the caller gets
 * `{ timedOut: true }` (and answers with its fallback) while a batch already running finishes for
 * nothing; a pair still queued at its deadline is taken out of the queue. `queueLimit` bounds the
 * pairs waiting, so overload is refused up front (429) rather than answered late.
 *
 * Written here because the policy (deadline fallback, refusal by queue length) is the server's own;
 * batching libraries (dataloader, p-queue) batch by tick or limit concurrency, neither by deadline.
 */

export type BatchOutcome<Out> = { value: Out } | { timedOut: true } | { error: Error };

interface Waiting<In, Out> {
  input: In;
  enqueued: number;
  settle(outcome: BatchOutcome<Out>): void;
  settled: boolean;
  timer: NodeJS.Timeout;
}

export interface BatcherOptions {
  maxBatch: number;
  maxWaitMs: number;
  queueLimit: number;
}

export interface BatcherStats {
  batches: number;
  pairs: number;
  timedOut: number;
}

export class DynamicBatcher<In, Out> {
  private queue: Waiting<In, Out>[] = [];
  private running: Promise<void> | undefined;
  private waitTimer: NodeJS.Timeout | undefined;
  readonly stats: BatcherStats = { batches: 0, pairs: 0, timedOut: 0 };
  /** Mean seconds per pair of the batches run so far (for Retry-After). */
  private secondsPerPair = 0;

  constructor(
    private readonly run: (inputs: In[]) => Promise<Out[]>,
    private readonly options: BatcherOptions,
  ) {}

  /** Pairs queued (not yet in a running batch). */
  get queued(): number {
    return this.queue.length;
  }

  /** Whether `n` more pairs fit in the queue. */
  canAccept(n: number): boolean {
    return this.queue.length + n <= this.options.queueLimit;
  }

  /** Seconds until the queue as it is now would be through, at the speed measured so far (at least 1). */
  retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.queue.length * this.secondsPerPair));
  }

  submit(input: In, deadlineMs: number): Promise<BatchOutcome<Out>> {
    return new Promise((resolve) => {
      const waiting: Waiting<In, Out> = {
        input,
        enqueued: performance.now(),
        settled: false,
        settle: (outcome) => {
          if (waiting.settled) return;
          waiting.settled = true;
          clearTimeout(waiting.timer);
          resolve(outcome);
        },
        timer: setTimeout(() => {
          this.stats.timedOut++;
          this.queue = this.queue.filter((w) => w !== waiting);
          waiting.settle({ timedOut: true });
        }, deadlineMs),
      };
      this.queue.push(waiting);
      this.schedule();
    });
  }

  /** Resolves when nothing is queued or running. */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.running) {
      this.schedule();
      await (this.running ?? new Promise((r) => setTimeout(r, this.options.maxWaitMs)));
    }
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    const oldest = this.queue[0] as Waiting<In, Out>;
    const waited = performance.now() - oldest.enqueued;
    if (this.queue.length >= this.options.maxBatch || waited >= this.options.maxWaitMs) {
      clearTimeout(this.waitTimer);
      this.waitTimer = undefined;
      this.running = this.runBatch(this.queue.splice(0, this.options.maxBatch)).finally(() => {
        this.running = undefined;
        this.schedule();
      });
    } else if (!this.waitTimer) {
      this.waitTimer = setTimeout(() => {
        this.waitTimer = undefined;
        this.schedule();
      }, this.options.maxWaitMs - waited);
    }
  }

  private async runBatch(batch: Waiting<In, Out>[]): Promise<void> {
    const started = performance.now();
    try {
      const outputs = await this.run(batch.map((w) => w.input));
      batch.forEach((w, i) => w.settle({ value: outputs[i] as Out }));
    } catch (error) {
      for (const w of batch) w.settle({ error: error as Error });
    }
    this.stats.batches++;
    this.stats.pairs += batch.length;
    const perPair = (performance.now() - started) / 1000 / batch.length;
    this.secondsPerPair = this.secondsPerPair === 0 ? perPair : 0.8 * this.secondsPerPair + 0.2 * perPair;
  }
}
