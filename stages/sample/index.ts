/**
 * sample: N completions per prompt from a checkpoint at a temperature, each parsed and verified
 * against the gold grade and the reference reasoning (TaoSR1's pass@N sampling, which feeds DPO).
 * Writes, per split, one line per prompt with its samples, and pass rates with unbiased pass@k.
 *
 *   sample:
 *     uses: sample
 *     needs: [sft, icl, kg]
 *     with: { num_generations: 8, temperature: 1.0 }
 */
import { z } from 'zod';
import { defineStage } from '../../pipeline/api.ts';
import { unbiasedPassAtK } from '../lib/rl/pass-at-k.ts';
import { judgeCompletion } from '../lib/relevance/completion.ts';
import { readPromptRecords } from '../lib/artifacts/prompts.ts';
import { samplesFile, type SampledPrompt, type SampleRecord } from '../lib/artifacts/samples.ts';
import { referenceSteps } from '../lib/relevance/prompts.ts';
import { seededSample } from '../lib/relevance/subsample.ts';

const params = z.strictObject({
  num_generations: z.number().int().min(1).default(8).describe('Completions sampled per prompt (N of pass@N)'),
  temperature: z.number().min(0).default(1).describe('Sampling temperature (0 = greedy, which makes every sample the same)'),
  top_p: z.number().gt(0).max(1).default(1).describe('Nucleus sampling mass'),
  top_k: z.number().int().min(0).default(0).describe('Keep the k most likely tokens (0 = all)'),
  max_completion_length: z.number().int().positive().default(160).describe('Token budget of a completion; longer ones are cut and fail the format'),
  batch_size: z.number().int().positive().default(32).describe('Rows generated together (a prompt\'s samples are rows of their own)'),
  splits: z.array(z.enum(['train', 'dev', 'test'])).min(1).default(['train']).describe('Prompt splits to sample'),
  limit: z.number().int().min(0).default(0).describe('At most this many prompts per split, a seeded random sample across queries (0 = all); from an RL pool (the checkpoint has rl-pool.json), a seeded sample of the pool'),
  // Optional rather than default(1), so configs that leave it out keep their fingerprints.
  pool_share: z
    .number()
    .gt(0)
    .max(1)
    .optional()
    .describe('From an RL pool: this share of the pool\'s prompts, a seeded sample (so the cost follows the data\'s size, not a fixed count); limit still caps it'),
});

/** k = 1, 2, 4, ... up to n, and n itself: the pass@k curve reported for n samples. */
export function passKs(n: number): number[] {
  const ks = new Set<number>([n]);
  for (let k = 1; k < n; k *= 2) ks.add(k);
  return [...ks].sort((a, b) => a - b);
}

export default defineStage({
  name: 'sample',
  version: '2',
  description: 'N verified completions per prompt from a checkpoint; pass rates and pass@k',
  params,
  produces: 'samples',
  resources: 'train',
  requires: () => ['checkpoint', 'kg', 'prompts'],
  async run(ctx) {
    const p = ctx.params;
    const { loadPolicy, generateCompletions, promptIds, fitsContext, releasePolicy } = await import('../lib/judge/model.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const { loadKnowledgeGraph } = await import('../lib/relevance/kg.ts');
    const { drawFromPool, poolSampleSize, restrictToRlPool, rankByUncertainty } = await import('../lib/rl/pool.ts');
    const { readRlPool } = await import('../lib/artifacts/checkpoint.ts');
    const checkpointDir = ctx.inputs.one('checkpoint').dir;
    const { policy, engine } = await loadPolicy(checkpointDir, ctx.engine, ctx.log);
    const kg = await loadKnowledgeGraph(ctx.inputs.one('kg').dir);
    const promptsDir = ctx.inputs.one('prompts').dir;
    const metrics: Record<string, number> = {};

    for (const split of p.splits) {
      let records = await readPromptRecords(promptsDir, split);
      // A checkpoint whose SFT held out an RL pool: train prompts come from the pool only, all of
      // at most `limit` of them (a seeded sample), ranked most uncertain first (stages/lib/rl/pool.ts).
      const pool = split === 'train' ? await readRlPool(checkpointDir) : undefined;
      const pooled = pool !== undefined;
      if (pool) {
        records = await restrictToRlPool(checkpointDir, records);
        // With SFT's grade balance, the sample favours the rare grades as SFT's epochs did.
        if (p.limit > 0 || (p.pool_share ?? 1) < 1) records = drawFromPool(records, pool, poolSampleSize(records.length, p.pool_share ?? 1, p.limit), ctx.rng.fork('rl-pool'));
      } else records = seededSample(records, p.limit, ctx.rng.fork(`${split}/prompts`));
      const fitting = records.filter((r) => fitsContext(policy, promptIds(policy.tokenizer, policy.format, r.messages).length, p.max_completion_length));
      const skipped = records.length - fitting.length;
      if (skipped > 0) ctx.log.warn(`${split}: skipped ${skipped} of ${records.length} prompts too long for the context with ${p.max_completion_length} new tokens`);
      const references = referenceSteps(fitting, kg);
      const completions = await generateCompletions(policy, fitting, {
        n: p.num_generations,
        batchSize: p.batch_size,
        maxNewTokens: p.max_completion_length,
        temperature: p.temperature,
        topK: p.top_k,
        topP: p.top_p,
        rng: ctx.rng.fork(split),
        signal: ctx.signal,
        onBatch: (done, total) => ctx.progress.update(done, total, `${split} completions`),
      });
      const byId = new Map<string, typeof completions>();
      for (const c of completions) byId.set(c.id, [...(byId.get(c.id) ?? []), c]);
      let sampled: SampledPrompt[] = fitting.map((record) => {
        const samples = (byId.get(record.id) ?? []).map((c): SampleRecord => {
          const judged = judgeCompletion(c.text, references.get(record.id)!, record.example.label);
          return {
            text: c.text,
            label: judged.parsed.label ?? null,
            format_ok: judged.parsed.formatOk,
            steps_verified: judged.verification.stepsVerified,
            correct: judged.correct,
            accepted: judged.verification.accepted,
            tokens: c.tokens.length,
            finish_reason: c.finishReason,
          };
        });
        const correct = samples.filter((s) => s.correct).length;
        return { ...record, samples, correct, pass_rate: correct / samples.length };
      });
      if (pooled) sampled = rankByUncertainty(sampled);
      await writeJsonl(samplesFile(ctx.outDir, split), sampled);

      const all = sampled.flatMap((s) => s.samples);
      const count = Math.max(1, sampled.length);
      metrics[`${split}.prompts`] = sampled.length;
      metrics[`${split}.skipped_too_long`] = skipped;
      metrics[`${split}.format_valid`] = all.filter((s) => s.format_ok).length / Math.max(1, all.length);
      metrics[`${split}.accepted`] = all.filter((s) => s.accepted).length / Math.max(1, all.length);
      metrics[`${split}.mean_tokens`] = all.reduce((n, s) => n + s.tokens, 0) / Math.max(1, all.length);
      metrics[`${split}.none_correct`] = sampled.filter((s) => s.correct === 0).length;
      metrics[`${split}.all_correct`] = sampled.filter((s) => s.correct === p.num_generations).length;
      for (const k of passKs(p.num_generations)) {
        metrics[`${split}.pass@${k}`] = sampled.reduce((sum, s) => sum + unbiasedPassAtK(p.num_generations, s.correct, k), 0) / count;
      }
      ctx.log.info(`${split}: ${JSON.stringify(Object.fromEntries(Object.entries(metrics).filter(([key]) => key.startsWith(`${split}.`))))}`);
    }
    await releasePolicy(policy);
    return { engine, metrics };
  },
});
