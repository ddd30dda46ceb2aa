import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { shardBatch } from '../../packages/engine/src/train/data-parallel.ts';
import {
  AdamW,
  adamWOptionsSchema,
  causalLmLoss,
  createModel,
  disposeModel,
  initEngine,
  loadTrainingState,
  padBatch,
  presets,
  resolveRanks,
  saveTrainingState,
  startDataParallel,
  trainStep,
  type DataParallelTrainer,
  type Model,
  type PaddedBatch,
  type StepResult,
  type TokenizedExample,
} from '../../packages/engine/src/index.ts';

const VOCAB = 64;
const config = presets.tiny(VOCAB, { num_hidden_layers: 2 });
const engine = { backend: 'wasm' as const };
// lr 1e-3: AdamW divides each gradient by its own running RMS, so entries whose gradient is itself
// float noise (q_proj at init: ~1e-9 against a norm of ~6) move by up to lr in either direction
// whatever the summation order. Measured: 2 ranks vs in-process differ by 6e-6 at lr 1e-3
// (6e-5 at 1e-2); 2 ranks vs in-process on the same shards as micro-batches, by 8e-7.
const STEP = { lr: 1e-3, maxGradNorm: 1 };

const rng = new Rng(7, 'data-parallel-test');
/** A row of `length` random ids whose loss counts from position `from` on (completion tokens). */
const example = (length: number, from: number): TokenizedExample => {
  const ids = Array.from({ length }, () => rng.int(VOCAB));
  return { ids, lossMask: ids.map((_, t) => (t >= from ? 1 : 0)) };
};
// Varied lengths, a row with no targets (rank 1's shard of micro-batch 1 then has none) and a
// one-row micro-batch (rank 0's shard of it is empty).
const microBatches: PaddedBatch[] = [
  padBatch([example(5, 2), example(9, 4), example(3, 1), example(7, 5), example(6, 3)]),
  padBatch([example(8, 4), example(4, 4)]),
  padBatch([example(6, 2)]),
];

const freshRun = () => {
  const model = createModel(config, new Rng(3, 'engine/init'));
  return { model, optimizer: new AdamW(model.params, adamWOptionsSchema.parse({})) };
};
const weights = (model: Model) => new Map([...model.params].map(([name, v]) => [name, v.dataSync() as Float32Array]));
const maxAbsDiff = (a: Model, b: Model) => {
  let max = 0;
  for (const [name, x] of weights(a)) {
    const y = b.params.get(name)!.dataSync();
    for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs((x[i] as number) - (y[i] as number)));
  }
  return max;
};
/** `steps` data-parallel steps from a fresh model; returns the model and the step results. */
const dataParallelRun = async (ranks: number, steps: number, batches = microBatches) => {
  const { model, optimizer } = freshRun();
  const trainer = await startDataParallel(model, optimizer, { ranks, engine });
  const results: StepResult[] = [];
  try {
    for (let i = 0; i < steps; i++) results.push(await trainer.step(batches, STEP));
  } finally {
    await trainer.close();
  }
  return { model, optimizer, results, lastStep: trainer.lastStep };
};
/** Worker threads alive in this process show as MessagePort resources until terminated. */
const livePorts = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;

const scratch = mkdtempSync(join(tmpdir(), 'engine-data-parallel-'));
beforeAll(async () => {
  await initEngine(engine);
});

describe('shardBatch', () => {
  it('splits rows contiguously, trims each shard to its longest row, and keeps every target', () => {
    const batch = microBatches[0]!; // row lengths 5, 9, 3, 7, 6; width 9
    const shards = [0, 1, 2].map((r) => shardBatch(batch, r, 3)); // rows [0, 1), [1, 3), [3, 5)
    expect(shards.map((s) => s.inputIds.length)).toEqual([1, 2, 2]);
    expect(shards.map((s) => s.inputIds[0]!.length)).toEqual([5, 9, 7]);
    expect(shards[2]!.inputIds).toEqual(batch.inputIds.slice(3).map((row) => row.slice(0, 7)));
    // Targets: positions >= from, excluding 0: 3 + 5 + 2 + 2 + 3 = 15.
    expect(batch.targetCount).toBe(15);
    expect(shards.map((s) => s.targetCount)).toEqual([3, 7, 5]);
    // One row over two ranks: rank 0 gets nothing.
    expect(shardBatch(microBatches[2]!, 0, 2)).toEqual({ inputIds: [], attentionMask: [], lossMask: [], targetCount: 0 });
  });
});

describe('startDataParallel', () => {
  it('with 2 ranks matches in-process trainStep on the same micro-batches over 3 steps', async () => {
    const reference = freshRun();
    const expected = [];
    for (let i = 0; i < 3; i++) expected.push(await trainStep(reference.model, reference.optimizer, microBatches, (b) => causalLmLoss(reference.model, b), STEP));
    // The replicas start from zeros and get the main model's parameters with every step, so a
    // missing sync would already break step 1; steps 2 and 3 check the sync of updated weights.
    const parallel = await dataParallelRun(2, 3);
    expect(parallel.results.map((r) => r.loss)).toEqual(expected.map((r) => expect.closeTo(r.loss, 5)));
    expect(parallel.results.map((r) => r.gradNorm)).toEqual(expected.map((r) => expect.closeTo(r.gradNorm, 5)));
    expect(maxAbsDiff(parallel.model, reference.model)).toBeLessThan(1e-5);
    expect(parallel.optimizer.step).toBe(3);
    // Not trivially equal: training moved the weights by far more than the tolerance.
    expect(maxAbsDiff(parallel.model, freshRun().model)).toBeGreaterThan(1e-3);
    disposeModel(reference.model);
  });

  it('is bit-identical across runs from the same start, and after a resume', async () => {
    // Three ranks: with two, a + b = b + a would hide a sum in arrival order; with three it would not.
    const first = await dataParallelRun(3, 2);
    const second = await dataParallelRun(3, 2);
    expect(second.results).toEqual(first.results);
    for (const [name, values] of weights(first.model)) expect(weights(second.model).get(name), name).toEqual(values);

    // Resume: the main thread loads a training state after the workers have moved on; the next
    // step must run from the loaded parameters (sent with the step), not the replicas' last ones.
    const { model, optimizer } = freshRun();
    await saveTrainingState(scratch, model, optimizer);
    const trainer = await startDataParallel(model, optimizer, { ranks: 3, engine });
    try {
      await trainer.step(microBatches, { lr: 1e-2, maxGradNorm: 1 });
      loadTrainingState(scratch, model, optimizer);
      const resumed = [await trainer.step(microBatches, STEP), await trainer.step(microBatches, STEP)];
      expect(resumed).toEqual(first.results);
      for (const [name, values] of weights(first.model)) expect(weights(model).get(name), name).toEqual(values);
    } finally {
      await trainer.close();
    }
  });

  it('with 1 rank is trainStep itself', async () => {
    const reference = freshRun();
    const expected = await trainStep(reference.model, reference.optimizer, microBatches, (b) => causalLmLoss(reference.model, b), STEP);
    const single = await dataParallelRun(1, 1);
    expect(single.results).toEqual([expected]);
    expect(single.lastStep).toBeUndefined(); // nothing runs in parallel to break down
    expect(maxAbsDiff(single.model, reference.model)).toBe(0);
  });

  it("rejects a step with a worker's error, keeps working, and leaves no worker after close()", async () => {
    const before = livePorts();
    const { model, optimizer } = freshRun();
    const trainer: DataParallelTrainer = await startDataParallel(model, optimizer, { ranks: 2, engine });
    expect(trainer.workerEngines.map((e) => e.backend)).toEqual(['wasm']);
    expect(livePorts()).toBe(before + 1);
    const valid = example(6, 2);
    // Row 1 goes to rank 1 (the worker); row 0 to rank 0 (this thread).
    const badInWorker = padBatch([valid, { ids: [1, 2, 999, 3], lossMask: [0, 1, 1, 1] }]);
    await expect(trainer.step([badInWorker], STEP)).rejects.toThrow(/data-parallel rank 1: token id 999 at row 0, position 2 is outside the vocabulary/);
    const badHere = padBatch([{ ids: [1, 500, 3], lossMask: [0, 1, 1] }, valid]);
    await expect(trainer.step([badHere], STEP)).rejects.toThrow(/token id 500/);
    expect(optimizer.step).toBe(0);
    expect(trainer.lastStep).toBeUndefined(); // no step completed
    const started = performance.now();
    const ok = await trainer.step(microBatches, STEP);
    const wall = performance.now() - started;
    expect(ok.loss).toBeGreaterThan(0);
    expect(optimizer.step).toBe(1);
    // The step's parts are consecutive stretches of it (the worker's turn overlaps rank 0's).
    const parts = trainer.lastStep!;
    expect(parts.workers).toHaveLength(1);
    expect(parts.params + parts.own + parts.wait + parts.reduce).toBeLessThanOrEqual(wall);
    expect(parts.own).toBeGreaterThan(0);
    const turn = parts.workers[0]!;
    expect(turn.load + turn.gradients + turn.store).toBeLessThanOrEqual(parts.own + parts.wait);
    // A thread's CPU time cannot exceed its wall time, give or take one tick of the clock behind it
    // (schedstat here advances in 4 ms steps; 10 ms covers kernels ticking at 100 Hz).
    for (const [cpu, span] of [[parts.ownCpu, parts.own], [turn.gradientsCpu, turn.gradients]] as const) {
      if (process.platform === 'linux') expect(cpu).toBeGreaterThanOrEqual(0);
      if (cpu !== undefined) expect(cpu).toBeLessThanOrEqual(span + 10);
    }
    await trainer.close();
    await trainer.close();
    expect(livePorts()).toBe(before);
    await expect(trainer.step(microBatches, STEP)).rejects.toThrow(/closed/);
  });

  it('refuses ranks that are not positive integers', async () => {
    const { model, optimizer } = freshRun();
    await expect(startDataParallel(model, optimizer, { ranks: 0, engine })).rejects.toThrow(/ranks must be a positive integer, got 0/);
  });
});

describe('resolveRanks', () => {
  it('reads auto as the available cores, a number as itself, and gives 1 on backends with their own threads', () => {
    expect(resolveRanks('auto', 'wasm')).toBe(availableParallelism());
    expect(resolveRanks('auto', 'cpu')).toBe(availableParallelism());
    expect(resolveRanks(3, 'wasm')).toBe(3);
    expect(resolveRanks(1, 'cpu')).toBe(1);
    expect(resolveRanks(undefined, 'wasm')).toBe(1);
    expect(resolveRanks('auto', 'tensorflow')).toBe(1);
    expect(resolveRanks(4, 'tensorflow-gpu')).toBe(1);
  });
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  expect(livePorts()).toBe(0);
});
