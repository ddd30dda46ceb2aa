/**
 * Runs stages in this process. Each stage waits for the stages it needs; ready stages go through a
 * p-queue of width `concurrency`, and `train` stages first through a second queue as wide as
 * `resources.train`, so at most that many train at once. (The train queue is entered first and
 * holds its slot while waiting for a general one; the general queue never waits on it, so the
 * two cannot deadlock.)
 */
import PQueue from 'p-queue';
import type { PlannedStage } from '../plan.ts';
import { runStageInProcess } from './run-stage.ts';
import type { ExecutionRequest, Executor, StageResult } from './types.ts';

export const localExecutor: Executor = {
  name: 'local',
  async execute(request: ExecutionRequest): Promise<StageResult[]> {
    const { plan, stages, signal, emit } = request;
    const general = new PQueue({ concurrency: request.concurrency });
    const train = new PQueue({ concurrency: plan.loaded.config.resources.train });
    const results = new Map<string, Promise<StageResult>>();
    let stopped = false; // --on-error fail: no new stage starts after a failure

    const skip = (stage: PlannedStage, message: string): StageResult => {
      const result: StageResult = { stage: stage.name, fingerprint: stage.fingerprint, state: 'skipped', durationS: 0, logPath: plan.store.logPath(plan.loaded.config.name, stage.name), message };
      emit({ type: 'end', result });
      return result;
    };

    const build = async (stage: PlannedStage): Promise<StageResult> => {
      if (signal.aborted) return skip(stage, 'cancelled before it started');
      if (stopped) return skip(stage, 'the run stopped after a failure (--on-error fail)');
      const result = await runStageInProcess(plan, stage, { signal, emit });
      if (result.state === 'failed' && request.onError === 'fail') stopped = true;
      emit({ type: 'end', result });
      return result;
    };

    for (const stage of stages) {
      const upstream = stage.needs.flatMap((need) => {
        const pending = results.get(need);
        return pending ? [pending] : [];
      });
      results.set(
        stage.name,
        Promise.all(upstream).then((done) => {
          const broken = done.find((result) => result.state !== 'succeeded');
          if (broken) return skip(stage, `upstream ${broken.stage} ${broken.state === 'skipped' ? 'was skipped' : broken.state}`);
          const enqueue = () => general.add(() => build(stage));
          return stage.resources === 'train' ? train.add(enqueue) : enqueue();
        }),
      );
    }
    return Promise.all(stages.map((stage) => results.get(stage.name) as Promise<StageResult>));
  },
};
