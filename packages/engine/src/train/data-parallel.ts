/**
 * Synchronous data-parallel training on one machine: tfjs-wasm (and the cpu backend) compute on one
 * core per process, so N ranks (this thread plus N-1 worker_threads, each with its own backend and
 * a replica of the model) split every micro-batch by rows. Each rank returns the gradient of its
 * SUMMED loss and its target count; this thread adds them in rank order (deterministic), divides by
 * the total count (token-weighted, as `accumulateGradients`), clips and applies AdamW to its own
 * model. The replicas hold no state of their own: before every step this thread writes the current
 * parameters into one shared buffer (a few MB), so a resumed optimizer or a reloaded model needs no
 * extra sync; each worker writes its gradient sums into a shared buffer of its own. Nothing of that
 * size is allocated per step (see copyValuesInto).
 *
 *   const ranks = resolveRanks(ctx.engine.data_parallel, record.backend);
 *   const trainer = await startDataParallel(model, optimizer, { ranks, engine: ctx.engine });
 *   try { const { loss } = await trainer.step(microBatches, { lr, maxGradNorm }); } finally { await trainer.close(); }
 *
 * Workers load TypeScript on their own (`data-parallel-worker.mjs` registers tsx), so this works
 * under `node bin/pipeline.js`, `tsx` and vitest alike.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import type { ModelConfig } from '../model/config.ts';
import type { EngineOptions, EngineRecord } from '../host.ts';
import type { Model } from '../model/model.ts';
import type { AdamW } from './optim.ts';
import { tensorFromValues, copyValuesInto } from '../runtime/wasm-kernels.ts';
import { causalLmLoss, summedGradients, trainStep, type GradientSums, type PaddedBatch, type StepOptions, type StepResult } from './train.ts';

export interface DataParallelTrainer {
  readonly ranks: number;
  /** What each worker's backend reported at start (rank 1 first); empty for one rank. */
  readonly workerEngines: readonly EngineRecord[];
  /** Where the last completed step's time went (undefined for one rank, and before the first step). */
  readonly lastStep: StepTimes | undefined;
  /** Same contract and result as trainStep(model, optimizer, microBatches, (b) => causalLmLoss(model, b), options). */
  step(microBatches: PaddedBatch[], options: StepOptions): Promise<StepResult>;
  /** Terminates the workers; idempotent. */
  close(): Promise<void>;
}

/**
 * Wall milliseconds of the parts of one data-parallel step, in order. Only rank 0's gradients and
 * the workers' overlap; the rest is serial, so step = params + max(own, a worker's whole turn) + reduce.
 */
export interface StepTimes {
  /** This thread copying its parameters into the shared buffer. */
  params: number;
  /** Rank 0's gradients (this thread). */
  own: number;
  /** The CPU time of this thread during `own` (Linux; undefined elsewhere): against `own`, whether it ran or waited for a core. */
  ownCpu: number | undefined;
  /** After its own gradients, this thread waiting for the last worker's answer. */
  wait: number;
  /** Adding the workers' gradient sums in rank order, clipping and AdamW. */
  reduce: number;
  /** Per worker (rank 1 first), measured in the worker: reading the parameters in, its gradients, writing them out. */
  workers: WorkerTimes[];
}
export interface WorkerTimes {
  load: number;
  gradients: number;
  /** The worker thread's CPU time during `gradients` (as `ownCpu`). */
  gradientsCpu: number | undefined;
  store: number;
}

/**
 * Milliseconds of CPU the calling thread has run, from Linux's /proc/thread-self/schedstat
 * (undefined where that file does not exist). Node 20 has no per-thread CPU clock
 * (process.threadCpuUsage came in Node 23); process.cpuUsage() sums every thread. A thread's CPU
 * time for the same work tells a core that runs it slower apart from a core it waited for.
 */
export function threadCpuMs(): number | undefined {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return undefined;
  }
}
/** CPU milliseconds the calling thread ran since `start` (a threadCpuMs() reading). */
export function threadCpuMsSince(start: number | undefined): number | undefined {
  const now = threadCpuMs();
  return start === undefined || now === undefined ? undefined : now - start;
}

/** 'auto' -> os.availableParallelism(); a number -> itself; backends other than wasm/cpu -> 1 (tfjs-node runs its own threads). */
export function resolveRanks(setting: EngineOptions['data_parallel'], backend: string): number {
  if (backend !== 'wasm' && backend !== 'cpu') return 1;
  if (setting === undefined) return 1;
  return setting === 'auto' ? availableParallelism() : setting;
}

/**
 * Row `r` of `ranks` contiguous shards of a batch (rows [floor(r n / ranks), floor((r + 1) n / ranks))),
 * re-padded to the shard's own longest row. Trailing padding is inert (causal attention never looks
 * right; positions follow the mask), so the shard's summed loss is that of its rows in the full batch.
 */
export function shardBatch(batch: PaddedBatch, rank: number, ranks: number): PaddedBatch {
  const rows = batch.inputIds.length;
  const start = Math.floor((rank * rows) / ranks);
  const end = Math.floor(((rank + 1) * rows) / ranks);
  const lastUsed = (row: number[] | undefined) => {
    let last = -1;
    row?.forEach((value, t) => {
      if (value !== 0) last = t;
    });
    return last;
  };
  let width = 0;
  for (let b = start; b < end; b++) width = Math.max(width, lastUsed(batch.attentionMask[b]) + 1, lastUsed(batch.lossMask[b]) + 1);
  const cut = (rowsOf: number[][]) => rowsOf.slice(start, end).map((row) => row.slice(0, width));
  const lossMask = cut(batch.lossMask);
  return {
    inputIds: cut(batch.inputIds),
    attentionMask: cut(batch.attentionMask),
    lossMask,
    // As padBatch counts: token 0 of a row is never a target.
    targetCount: lossMask.reduce((n, row) => n + row.slice(1).reduce((a, b) => a + b, 0), 0),
  };
}

/** One rank's share of a step: gradient sums (in `variables` order; undefined when it had no targets). */
export type RankGradients = GradientSums;

/**
 * Sum over `shards` of the gradient of each shard's summed loss, unscaled (the caller divides by
 * the total weight of all ranks). Shards without targets are skipped: zero gradient, zero weight.
 */
export async function shardGradients(model: Model, shards: readonly PaddedBatch[], variables: tf.Variable[] = [...model.params.values()]): Promise<RankGradients> {
  return summedGradients(
    shards.filter((shard) => shard.targetCount > 0),
    variables,
    (shard) => causalLmLoss(model, shard),
  );
}

/** Messages between this thread and a worker (data-parallel-worker.ts). */
export interface WorkerInit {
  rank: number;
  config: ModelConfig;
  engine: EngineOptions;
  /** Parameter names in the order of `params` (and of the gradients a worker returns). */
  names: string[];
  /** Float32 parameters, concatenated in `names` order; rewritten before every step. */
  params: SharedArrayBuffer;
  /** Where this worker writes its gradient sums (same layout as `params`); read before the next step. */
  grads: SharedArrayBuffer;
}
export type ToWorker = { type: 'step'; id: number; shards: PaddedBatch[] };
export type FromWorker =
  | { type: 'ready'; engine: EngineRecord }
  /** hasGrads: the worker's `grads` buffer holds this step's sums (false: its shards had no targets). */
  | { type: 'result'; id: number; hasGrads: boolean; lossSum: number; weight: number; times: WorkerTimes }
  | { type: 'error'; id: number | null; message: string };

type Settle<T> = { resolve: (value: T) => void; reject: (error: Error) => void };

/** One worker thread and the request it is answering (at most one at a time). */
class WorkerRank {
  readonly worker: Worker;
  readonly ready: Promise<EngineRecord>;
  private starting: Settle<EngineRecord> | undefined;
  private pending: (Settle<Extract<FromWorker, { type: 'result' }>> & { id: number }) | undefined;
  /** Why this worker cannot take work (it exited, crashed or was closed). */
  dead: string | undefined;

  constructor(readonly rank: number, init: WorkerInit) {
    this.worker = new Worker(new URL('./data-parallel-worker.mjs', import.meta.url), { workerData: init });
    this.ready = new Promise((resolve, reject) => (this.starting = { resolve, reject }));
    this.worker.on('message', (message: FromWorker) => this.receive(message));
    this.worker.on('error', (error: Error) => this.fail(`data-parallel rank ${rank} crashed: ${error.message}`));
    this.worker.on('exit', (code: number) => this.fail(`data-parallel rank ${rank} exited (code ${code})`));
  }

  private receive(message: FromWorker): void {
    if (message.type === 'ready') {
      this.starting?.resolve(message.engine);
      this.starting = undefined;
    } else if (message.type === 'error' && message.id === null) {
      this.fail(`data-parallel rank ${this.rank} failed to start: ${message.message}`);
    } else if (this.pending?.id === message.id) {
      const pending = this.pending;
      this.pending = undefined;
      if (message.type === 'error') pending.reject(new Error(`data-parallel rank ${this.rank}: ${message.message}`));
      else pending.resolve(message);
    }
  }

  /** Rejects whatever is waiting on this worker; later requests fail at once with `reason`. */
  private fail(reason: string): void {
    this.dead ??= reason;
    this.starting?.reject(new Error(reason));
    this.starting = undefined;
    this.pending?.reject(new Error(reason));
    this.pending = undefined;
  }

  request(message: ToWorker): Promise<Extract<FromWorker, { type: 'result' }>> {
    if (this.dead) return Promise.reject(new Error(this.dead));
    if (this.pending) return Promise.reject(new Error(`Internal error: data-parallel rank ${this.rank} is already busy`));
    return new Promise((resolve, reject) => {
      this.pending = { id: message.id, resolve, reject };
      this.worker.postMessage(message);
    });
  }

  async terminate(): Promise<void> {
    this.fail(`data-parallel rank ${this.rank} was closed`);
    await this.worker.terminate();
  }
}

/**
 * Starts `ranks - 1` workers, each with its own backend (the one this thread runs) and a replica of
 * `model`, and resolves once all are ready. ranks 1 = no workers: step() runs trainStep in-process.
 * Call close() when done (in a `finally`): live workers keep the process running.
 */
export async function startDataParallel(model: Model, optimizer: AdamW, options: { ranks: number; engine: EngineOptions }): Promise<DataParallelTrainer> {
  const { ranks } = options;
  if (!Number.isInteger(ranks) || ranks < 1) throw new Error(`startDataParallel: ranks must be a positive integer, got ${ranks}`);
  if (ranks === 1) {
    return {
      ranks,
      workerEngines: [],
      lastStep: undefined,
      step: (microBatches, stepOptions) => trainStep(model, optimizer, microBatches, (b) => causalLmLoss(model, b), stepOptions),
      close: async () => {},
    };
  }
  const backend = tf.getBackend();
  if (backend !== 'wasm' && backend !== 'cpu') {
    throw new Error(`startDataParallel: ${ranks} ranks need the wasm or cpu backend (this process runs ${backend}, which uses its own threads); use 1`);
  }

  const variables = [...model.params.values()];
  const offsets: number[] = [];
  let total = 0;
  for (const v of variables) {
    offsets.push(total);
    total += v.size;
  }
  const bytes = total * Float32Array.BYTES_PER_ELEMENT;
  const shared = new SharedArrayBuffer(bytes);
  const sharedParams = new Float32Array(shared);
  // Workers start the backend this thread runs, so `auto` cannot resolve differently there.
  const engine: EngineOptions = { ...options.engine, backend };
  const names = [...model.params.keys()];
  const gradBuffers = Array.from({ length: ranks - 1 }, () => new SharedArrayBuffer(bytes));
  const workers = Array.from({ length: ranks - 1 }, (_, i) => new WorkerRank(i + 1, { rank: i + 1, config: model.config, engine, names, params: shared, grads: gradBuffers[i] as SharedArrayBuffer }));
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= Promise.all(workers.map((w) => w.terminate())).then(() => undefined));
  let workerEngines: EngineRecord[];
  try {
    workerEngines = await Promise.all(workers.map((w) => w.ready));
  } catch (error) {
    await close();
    throw error;
  }

  let nextId = 0;
  let busy = false;
  let lastStep: StepTimes | undefined;
  const step = async (microBatches: PaddedBatch[], stepOptions: StepOptions): Promise<StepResult> => {
    if (closing) throw new Error('data-parallel trainer is closed');
    if (busy) throw new Error('data-parallel trainer: step() called while another step is running');
    busy = true;
    try {
      return await runStep(microBatches, stepOptions);
    } finally {
      busy = false;
    }
  };

  const runStep = async (microBatches: PaddedBatch[], stepOptions: StepOptions): Promise<StepResult> => {
    stepOptions.signal?.throwIfAborted();
    const id = nextId++;
    const started = performance.now();
    for (const [i, v] of variables.entries()) copyValuesInto(v, sharedParams, offsets[i] as number);
    const copied = performance.now();
    // Workers first, so they compute while this thread does rank 0.
    const requests = workers.map((w) =>
      w.request({ type: 'step', id, shards: microBatches.map((b) => shardBatch(b, w.rank, ranks)) }),
    );
    // Until every worker answered, nothing may rewrite the shared parameters: settle them all first.
    let own: RankGradients | undefined;
    let ownError: unknown;
    const ownCpuStart = threadCpuMs();
    try {
      own = await shardGradients(model, microBatches.map((b) => shardBatch(b, 0, ranks)), variables);
    } catch (error) {
      ownError = error;
    }
    const ownDone = performance.now();
    const ownCpu = threadCpuMsSince(ownCpuStart);
    const answers = await Promise.allSettled(requests);
    const answered = performance.now();
    const failed = answers.find((a): a is PromiseRejectedResult => a.status === 'rejected');
    if (ownError !== undefined || failed) {
      tf.dispose(own?.sums ?? []);
      throw ownError ?? failed?.reason;
    }
    const results = answers.map((a) => (a as PromiseFulfilledResult<Extract<FromWorker, { type: 'result' }>>).value);

    // Rank order, fixed: rank 0 (this thread), then the workers' sums.
    let sums = own?.sums;
    let lossSum = own?.lossSum ?? 0;
    let weight = own?.weight ?? 0;
    for (const [w, result] of results.entries()) {
      lossSum += result.lossSum;
      weight += result.weight;
      if (!result.hasGrads) continue;
      const flat = new Float32Array(gradBuffers[w] as SharedArrayBuffer);
      const theirs = variables.map((v, i) => tensorFromValues(flat.subarray(offsets[i], (offsets[i] as number) + v.size), v.shape));
      if (!sums) sums = theirs;
      else {
        const previous: tf.Tensor[] = sums;
        sums = previous.map((s, i) => tf.add(s, theirs[i] as tf.Tensor));
        tf.dispose([...previous, ...theirs]);
      }
    }
    if (!sums || weight === 0) {
      throw new Error('data-parallel step: no micro-batch has a loss target (every lossMask[:, 1:] is 0)');
    }
    if (stepOptions.signal?.aborted) {
      tf.dispose(sums);
      stepOptions.signal.throwIfAborted(); // before the update: the parameters stay as they were
    }
    const scale = 1 / weight;
    const grads = new Map<string, tf.Tensor>();
    sums.forEach((s, i) => {
      grads.set(names[i] as string, tf.mul(s, scale));
      s.dispose();
    });
    const norm = await optimizer.clipAndApply(grads, stepOptions.lr, stepOptions.maxGradNorm);
    tf.dispose([...grads.values()]);
    lastStep = {
      params: copied - started,
      own: ownDone - copied,
      ownCpu,
      wait: answered - ownDone,
      reduce: performance.now() - answered,
      workers: results.map((r) => r.times),
    };
    return { loss: lossSum * scale, gradNorm: norm, lr: stepOptions.lr };
  };

  return {
    ranks,
    workerEngines,
    get lastStep() {
      return lastStep;
    },
    step,
    close,
  };
}
