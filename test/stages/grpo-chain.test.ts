/**
 * A tiny real chain through the CLI: world -> kg -> icl -> cot -> sft (a 1-layer d=32 model, a few
 * steps) -> sample -> dpo -> grpo with a user reward file. Checks what users rely on: the stages
 * publish what the next one reads, a tiny GRPO run raises its mean reward, and editing the reward
 * file reruns only grpo; sft and grpo resumed from a step checkpoint end where uninterrupted runs end.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stepCheckpoints } from '../../pipeline/executor/checkpoints.ts';
import dpoStage from '../../stages/dpo/index.ts';
import grpoStage from '../../stages/grpo/index.ts';
import sftStage from '../../stages/sft/index.ts';
import { testContext } from '../data/context.ts';
import { cli, tempDir } from '../pipeline/cli-helpers.ts';

const { dir, remove } = tempDir('rl-chain-');
afterAll(remove);

const CONFIG = `name: rl-chain
seed: 3
engine: { backend: auto }
stages:
  world: { uses: world, with: { queries: 16, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  icl: { uses: icl, needs: [world, kg], with: { facts: 0, shots: 0, rules: none } }
  cot: { uses: cot, needs: [icl, kg] }
  sft:
    uses: sft
    needs: [cot, icl]
    with:
      drop_system_prompt: true
      vocab_size: 320
      model: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }
      max_steps: 2
      batch_size: 8
      eval_prompts: 0
  sample:
    uses: sample
    needs: [sft, icl, kg]
    with: { num_generations: 2, max_completion_length: 16, limit: 6 }
  dpo:
    uses: dpo
    needs: [sample, sft, cot]
    with: { max_steps: 2, batch_size: 2, eval_prompts: 0 }
  grpo:
    uses: grpo
    needs: [dpo, icl, kg]
    with:
      rewards: [{ use: ./letter-share.ts, with: { letter: e } }]
      num_generations: 4
      prompts_per_step: 4
      max_steps: 12
      learning_rate: 0.03
      warmup_steps: 0
      max_completion_length: 12
      dynamic_sampling: false
      replay_threshold: 0
      eval_prompts: 0
  grpo-stepwise:
    uses: grpo
    needs: [dpo, icl, kg]
    with:
      rewards: [{ use: steps }, { use: ./letter-share.ts }]
      learning_rate: 0.03
      advantage: stepwise
      num_iterations: 2
      beta: 0.04
      loss_type: grpo
      scale_rewards: batch
      num_generations: 2
      prompts_per_step: 4
      max_steps: 2
      max_completion_length: 12
      dynamic_sampling: false
      replay_threshold: 0.5
      replay_share: 0.5
      eval_prompts: 0
  grpo-dyknow:
    uses: grpo
    needs: [dpo, icl, kg]
    with:
      rewards: [{ use: label }, { use: format, weight: 0.2 }]
      rollout: dyknow
      replay_threshold: 0
      min_distinct_reasoning: 2
      max_generation_rounds: 2
      curriculum: [{ difficulty: [easy, medium], steps: 1 }, { difficulty: [hard], steps: 1 }]
      num_generations: 2
      prompts_per_step: 2
      max_steps: 2
      max_completion_length: 12
      eval_prompts: 0
`;

interface Manifest {
  stage: string;
  created: string;
  metrics: Record<string, number>;
}

function artifacts(): { dir: string; manifest: Manifest }[] {
  const objects = path.join(dir, 'checkpoints', 'objects');
  return readdirSync(objects).map((d) => ({ dir: path.join(objects, d), manifest: JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8')) as Manifest }));
}

function newest(stage: string): { dir: string; manifest: Manifest } {
  const found = artifacts()
    .filter((a) => a.manifest.stage === stage)
    .sort((a, b) => b.manifest.created.localeCompare(a.manifest.created));
  if (!found[0]) throw new Error(`no artifact of ${stage}`);
  return found[0];
}

describe('sft -> sample -> dpo -> grpo through the CLI', () => {
  it('runs end to end; a tiny GRPO run raises its mean reward; editing the reward file reruns only grpo', async () => {
    writeFileSync(path.join(dir, 'pipeline.yaml'), CONFIG);
    copyFileSync(path.join(import.meta.dirname, 'fixtures', 'rl', 'letter-share.ts'), path.join(dir, 'letter-share.ts'));
    // A user project is an ES module package; without this a .ts reward outside one fails to load
    // under tsx ("Cannot require() ES Module ... in a cycle").
    writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
    const first = await cli(dir, ['run', 'pipeline.yaml']);
    expect(first.stderr + first.stdout).toMatch(/succeeded: 10 built, 0 cached/);

    // sample: 6 prompts x 2 samples, each verified.
    const sampled = readFileSync(path.join(newest('sample').dir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(sampled).toHaveLength(6);
    for (const s of sampled) expect(s.samples).toHaveLength(2);
    // A 2-step model writes no correct 16-token judgement, so every DPO pair takes the teacher's CoT.
    const dpo = newest('dpo').manifest.metrics;
    expect(dpo.pairs_from_teacher).toBeGreaterThan(0);
    expect(dpo.pairs).toBe(dpo.pairs_from_samples! + dpo.pairs_from_teacher!);
    // Each training step logs its throughput (real tokens of the chosen and rejected rows a second), as sft does.
    const dpoSteps = readFileSync(path.join(newest('dpo').dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => 'loss' in m);
    expect(dpoSteps.length).toBeGreaterThan(0);
    for (const m of dpoSteps) expect(m.tokens_per_s).toBeGreaterThan(0);
    for (const file of ['model.safetensors', 'config.json', 'tokenizer.json', 'completion_format.json']) {
      expect(readdirSync(newest('grpo').dir)).toContain(file);
    }

    // The reward is logged under the file's name each step, and its mean rises over 12 steps.
    const steps = readFileSync(path.join(newest('grpo').dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((m) => typeof m['reward/letter-share'] === 'number');
    expect(steps).toHaveLength(12);
    const meanOf = (rows: { reward: number }[]) => rows.reduce((a, r) => a + r.reward, 0) / rows.length;
    expect(meanOf(steps.slice(-4))).toBeGreaterThan(meanOf(steps.slice(0, 4)));

    // The other options run too: stepwise advantages, two iterations per batch, KL to a reference,
    // guided replay (an untrained model is below any accuracy threshold, so half the groups replay).
    const stepwise = readFileSync(path.join(newest('grpo-stepwise').dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((m) => typeof m['reward/steps'] === 'number');
    expect(stepwise).toHaveLength(2);
    for (const m of stepwise) {
      expect(m.replayed_groups).toBe(2);
      expect(Number.isFinite(m.loss)).toBe(true);
      // Logged from the second iteration, after the first update moved the policy off the reference.
      expect(m.kl).toBeGreaterThan(0);
      expect(m.clip_ratio).toBeGreaterThanOrEqual(0);
      expect(m.clip_ratio).toBeLessThanOrEqual(1);
      // Hinted rollouts are logged apart from on-policy ones, with their importance weight.
      expect(m.hinted_accuracy).toBeGreaterThanOrEqual(0);
      expect(m.replay_weight).toBeGreaterThan(0);
      expect(m.replay_weight).toBeLessThanOrEqual(1);
    }

    // DyKnow-RAG: two groups per prompt (with and without the knowledge block), each logged; an
    // untrained model gets (almost) everything wrong, so dynamic sampling refills up to 2 rounds.
    const dyknow = readFileSync(path.join(newest('grpo-dyknow').dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((m) => typeof m.generation_rounds === 'number');
    expect(dyknow).toHaveLength(2);
    for (const m of dyknow) {
      expect(m.accuracy_with_context).toBeGreaterThanOrEqual(0);
      expect(m.accuracy_without_context).toBeGreaterThanOrEqual(0);
      expect(m.generation_rounds).toBeGreaterThanOrEqual(1);
      expect(m.generation_rounds).toBeLessThanOrEqual(2);
      expect(m.kept_fraction).toBeGreaterThanOrEqual(0);
      expect(m.kept_fraction).toBeLessThanOrEqual(1);
    }

    // Editing the reward file reruns the two grpo stages that use it and nothing before them: with
    // grpo shortened to one step, an unchanged file is a cache hit and an edited one a rebuild.
    const short = ['run', 'pipeline.yaml', '--set', 'stages.grpo.with.max_steps=1', '--set', 'stages.grpo-stepwise.with.max_steps=1'];
    expect((await cli(dir, short)).stdout).toMatch(/succeeded: 2 built, 8 cached/);
    expect((await cli(dir, short)).stdout).toMatch(/succeeded: 0 built, 10 cached/);
    writeFileSync(path.join(dir, 'letter-share.ts'), `${readFileSync(path.join(dir, 'letter-share.ts'), 'utf8')}\n// edited\n`);
    const edited = await cli(dir, short);
    expect(edited.stdout).toMatch(/succeeded: 2 built, 8 cached/);
    expect(edited.stdout).toMatch(/grpo: rerun.*letter-share/);
  }, 600_000);

  it('grpo resumed from a step checkpoint ends with the weights and the figures of an uninterrupted run', async () => {
    const inputs = [
      { stage: 'dpo', kind: 'checkpoint' as const, dir: newest('dpo').dir },
      { stage: 'icl', kind: 'prompts' as const, dir: newest('icl').dir },
      { stage: 'kg', kind: 'kg' as const, dir: newest('kg').dir },
    ];
    const params = {
      rewards: [{ use: './letter-share.ts' }],
      num_generations: 2,
      prompts_per_step: 2,
      max_steps: 3,
      checkpoint_every: 1,
      learning_rate: 0.03,
      max_completion_length: 8,
      dynamic_sampling: false,
      replay_threshold: 0,
      eval_prompts: 0,
    };
    /** Runs the stage in-process with real step checkpoints in `workDir`; aborts while step `stopAfter` is logged. */
    const run = async (workDir: string, stopAfter?: number) => {
      const ctx = testContext(grpoStage, { params, inputs, configDir: dir, seed: 3 });
      const controller = new AbortController();
      // The way Ctrl-C stops a run: the signal fires while step 2 is logged, its checkpoint is
      // saved, and the stage throws at its next check.
      Object.assign(ctx, {
        engine: { backend: 'wasm' },
        workDir,
        checkpoints: stepCheckpoints(workDir),
        signal: controller.signal,
        metrics: { log: (step: number) => step === stopAfter && controller.abort() },
      });
      const result = await grpoStage.run(ctx as never);
      return { weights: readFileSync(path.join(ctx.outDir, 'model.safetensors')), metrics: (result as { metrics: Record<string, number> }).metrics, logs: ctx.logs };
    };
    const whole = await run(path.join(dir, 'work-whole'));
    const resumedWork = path.join(dir, 'work-resumed');
    await expect(run(resumedWork, 2)).rejects.toThrow();
    const resumed = await run(resumedWork);
    expect(resumed.logs).toContain('info: resumed from step 2');
    expect(whole.logs.some((l) => l.includes('resumed'))).toBe(false);
    expect(resumed.weights.equals(whole.weights)).toBe(true);
    // Totals and the reward curve come back from the step checkpoint: the same manifest figures.
    expect(resumed.metrics).toEqual(whole.metrics);
    expect(whole.metrics.generated_groups).toBe(6);
  });

  it('sft resumed from a step checkpoint ends with the weights and dev figures of an uninterrupted run', async () => {
    const inputs = [
      { stage: 'cot', kind: 'sft-set' as const, dir: newest('cot').dir },
      { stage: 'icl', kind: 'prompts' as const, dir: newest('icl').dir },
    ];
    const params = {
      drop_system_prompt: true,
      vocab_size: 320,
      model: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 },
      max_steps: 5,
      batch_size: 4,
      checkpoint_every: 1,
      eval_every: 0,
      eval_prompts: 6,
      max_new_tokens: 12,
    };
    const run = async (workDir: string, stopAfter?: number) => {
      const ctx = testContext(sftStage, { params, inputs, configDir: dir, seed: 3 });
      const controller = new AbortController();
      Object.assign(ctx, {
        // Two data-parallel ranks: the workers' shares must resume exactly too.
        engine: { backend: 'wasm', data_parallel: 2 },
        workDir,
        checkpoints: stepCheckpoints(workDir),
        signal: controller.signal,
        metrics: { log: (step: number) => step === stopAfter && controller.abort() },
      });
      const result = await sftStage.run(ctx as never);
      return { weights: readFileSync(path.join(ctx.outDir, 'model.safetensors')), metrics: (result as { metrics: Record<string, number> }).metrics, logs: ctx.logs };
    };
    const whole = await run(path.join(dir, 'sft-whole'));
    const resumedWork = path.join(dir, 'sft-resumed');
    await expect(run(resumedWork, 3)).rejects.toThrow();
    const resumed = await run(resumedWork);
    expect(resumed.logs).toContain('info: resumed from step 3');
    expect(resumed.weights.equals(whole.weights)).toBe(true);
    expect(resumed.metrics).toEqual(whole.metrics);
    // The probe is a sample of the prompts' dev split, scored against the lexical baseline on the same prompts.
    expect(whole.metrics.dev_probe_prompts).toBe(6);
    expect(whole.metrics.data_parallel_ranks).toBe(2);
    expect(whole.metrics.baseline_dev_acc4).toBeGreaterThanOrEqual(0);
    expect(whole.metrics.dev_format_valid).toBeGreaterThanOrEqual(0);
    // eval_prompts 0 means no probe, in sft as in dpo and grpo (the shared key's one meaning).
    const unprobed = testContext(sftStage, { params: { ...params, max_steps: 1, eval_prompts: 0 }, inputs, configDir: dir, seed: 3 });
    Object.assign(unprobed, { engine: { backend: 'wasm', data_parallel: 1 }, workDir: path.join(dir, 'sft-unprobed') });
    const unprobedResult = (await sftStage.run(unprobed as never)) as { metrics: Record<string, number> };
    expect(unprobedResult.metrics.dev_probe_prompts).toBe(0);
  }, 300_000);

  it('LoRA sft on the sft checkpoint resumes to the same adapters and writes them in PEFT format beside merged weights', async () => {
    const init = newest('sft').dir;
    const inputs = [{ stage: 'cot', kind: 'sft-set' as const, dir: newest('cot').dir }];
    const params = {
      init,
      drop_system_prompt: true,
      lora: { r: 2, lora_alpha: 4, lora_dropout: 0.1, target_modules: ['q_proj', 'v_proj', 'down_proj'] },
      max_steps: 4,
      batch_size: 4,
      learning_rate: 0.02,
      checkpoint_every: 1,
      eval_every: 0,
      eval_prompts: 0,
    };
    const run = async (workDir: string, stopAfter?: number) => {
      const ctx = testContext(sftStage, { params, inputs, configDir: dir, seed: 3 });
      const controller = new AbortController();
      Object.assign(ctx, {
        engine: { backend: 'wasm', data_parallel: 2 },
        workDir,
        checkpoints: stepCheckpoints(workDir),
        signal: controller.signal,
        metrics: { log: (step: number) => step === stopAfter && controller.abort() },
      });
      const result = await sftStage.run(ctx as never);
      const read = (file: string) => readFileSync(path.join(ctx.outDir, file));
      return { adapter: read('adapter/adapter_model.safetensors'), merged: read('model.safetensors'), config: JSON.parse(read('adapter/adapter_config.json').toString()), metrics: (result as { metrics: Record<string, number> }).metrics, logs: ctx.logs };
    };
    const whole = await run(path.join(dir, 'lora-whole'));
    const resumedWork = path.join(dir, 'lora-resumed');
    await expect(run(resumedWork, 2)).rejects.toThrow();
    const resumed = await run(resumedWork);
    expect(resumed.logs).toContain('info: resumed from step 2');
    expect(resumed.adapter.equals(whole.adapter)).toBe(true);
    expect(resumed.merged.equals(whole.merged)).toBe(true);
    // The adapters trained (the merged weights moved off the base) and only they did.
    expect(whole.merged.equals(readFileSync(path.join(init, 'model.safetensors')))).toBe(false);
    // 1 layer, d 32, 2 heads of 16, 1 kv head, SwiGLU 64; r 2: q (2*32 + 32*2) + v (2*32 + 16*2) + down (2*64 + 32*2) = 416.
    expect(whole.metrics.trainable_parameters).toBe(416);
    expect(whole.metrics.data_parallel_ranks).toBe(1);
    expect(whole.config).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4, lora_dropout: 0.1, target_modules: ['down_proj', 'q_proj', 'v_proj'], base_model_name_or_path: init });
    expect(whole.logs.some((l) => /LoRA r 2 on q_proj, v_proj, down_proj; memory: \d+ frozen x 4 B .* 416 trainable x 16 B/.test(l))).toBe(true);
  }, 300_000);

  it('dpo and grpo (KL to the base under the adapters) train LoRA adapters and save them in PEFT format', async () => {
    const lora = { r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'] };
    const runStage = async (stage: typeof dpoStage, params: Record<string, unknown>, inputs: { stage: string; kind: 'checkpoint' | 'samples' | 'sft-set' | 'prompts' | 'kg'; dir: string }[]) => {
      const ctx = testContext(stage, { params: { ...params, lora }, inputs, configDir: dir, seed: 3 });
      Object.assign(ctx, { engine: { backend: 'wasm' } });
      await stage.run(ctx as never);
      return { out: ctx.outDir, logs: ctx.logs };
    };
    const sft = newest('sft').dir;
    const dpo = await runStage(dpoStage, { max_steps: 2, batch_size: 2, eval_prompts: 0 }, [
      { stage: 'sample', kind: 'samples', dir: newest('sample').dir },
      { stage: 'sft', kind: 'checkpoint', dir: sft },
      { stage: 'cot', kind: 'sft-set', dir: newest('cot').dir },
    ]);
    const grpo = await runStage(grpoStage as unknown as typeof dpoStage, { rewards: [{ use: 'format' }], beta: 0.04, num_generations: 2, prompts_per_step: 2, max_steps: 2, learning_rate: 0.03, max_completion_length: 8, dynamic_sampling: false, replay_threshold: 0, eval_prompts: 0 }, [
      { stage: 'dpo', kind: 'checkpoint', dir: dpo.out },
      { stage: 'icl', kind: 'prompts', dir: newest('icl').dir },
      { stage: 'kg', kind: 'kg', dir: newest('kg').dir },
    ]);
    for (const [run, base] of [[dpo, sft], [grpo, dpo.out]] as const) {
      expect(readdirSync(path.join(run.out, 'adapter')).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
      expect(JSON.parse(readFileSync(path.join(run.out, 'adapter', 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(base);
      // 1 layer, d 32, 2 heads of 16, 1 kv head; r 2: q (2*32 + 32*2) + v (2*32 + 16*2) = 224 trainable.
      expect(run.logs.some((l) => /LoRA r 2 on q_proj, v_proj; memory: \d+ frozen x 4 B .* 224 trainable x 16 B/.test(l))).toBe(true);
    }
  }, 300_000);

  it('dpo with no pair to learn from fails saying why and what to give it, and publishes nothing', async () => {
    // The chain's samples with every completion wrong, and no sft-set: no prompt has a chosen side.
    const sampled = readFileSync(path.join(newest('sample').dir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const allWrong = path.join(dir, 'samples-all-wrong');
    mkdirSync(allWrong);
    writeFileSync(path.join(allWrong, 'train.jsonl'), sampled.map((r) => JSON.stringify({ ...r, samples: r.samples.map((s: object) => ({ ...s, correct: false })) })).join('\n') + '\n');
    const ctx = testContext(dpoStage, {
      params: { max_steps: 2, batch_size: 2, eval_prompts: 0 },
      inputs: [
        { stage: 'sample', kind: 'samples', dir: allWrong },
        { stage: 'sft', kind: 'checkpoint', dir: newest('sft').dir },
      ],
      configDir: dir,
    });
    Object.assign(ctx, { engine: { backend: 'wasm' } });
    await expect(dpoStage.run(ctx as never)).rejects.toThrow(
      `no preference pair to train on from ${sampled.length} sampled prompts (0 had every sample right, ${sampled.length} none right); give it more prompts (sample's pool_share, sft's rl_pool), more samples a prompt (sample's num_generations), or cot in dpo's needs`,
    );
    expect(readdirSync(ctx.outDir)).toEqual([]);
  }, 300_000);
});
