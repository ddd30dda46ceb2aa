/**
 * `uses: icl`: knowledge-graph in-context prompts for every example of a dataset (LORE's KG-ICL):
 * linked entities, the k most relevant facts, BM25-chosen few-shot exemplars from train, a system
 * prompt with the grading guideline and the rules, within a token budget.
 *
 * Writes a 'prompts' artifact: train/dev/test.jsonl of {id, messages, example, facts}, stats.json
 * (see stages/lib/relevance/prompts.ts).
 */
import path from 'node:path';
import { defineStage } from '../../pipeline/api.ts';
import { promptParamsSchema } from '../lib/relevance/prompts.ts';

export default defineStage({
  name: 'icl',
  version: '2',
  description: 'Render chat prompts with knowledge-graph facts, few-shot exemplars and the rules, within a token budget.',
  params: promptParamsSchema,
  produces: 'prompts',
  resources: 'light',
  requires: () => ['dataset', 'kg'],
  async run(ctx) {
    const { loadKnowledgeGraph } = await import('../lib/relevance/kg.ts');
    const { readSplits, SPLITS } = await import('../lib/artifacts/dataset.ts');
    const { writeJson } = await import('../lib/io/json.ts');
    const { writeJsonl } = await import('../lib/io/jsonl.ts');
    const { PromptBuilder } = await import('../lib/relevance/prompts.ts');

    const splits = await readSplits(ctx.inputs.one('dataset').dir);
    const kg = await loadKnowledgeGraph(ctx.inputs.one('kg').dir);
    const builder = new PromptBuilder(kg, splits.train, ctx.params);
    const total = SPLITS.reduce((n, s) => n + splits[s].length, 0);
    let done = 0;
    for (const split of SPLITS) {
      const records = splits[split].map((example) => {
        if (ctx.signal.aborted) throw new Error('aborted');
        const record = builder.build(example);
        if (++done % 200 === 0 || done === total) ctx.progress.update(done, total, 'prompts');
        return record;
      });
      await writeJsonl(path.join(ctx.outDir, `${split}.jsonl`), records);
    }
    const stats = { ...builder.stats, bySplit: Object.fromEntries(SPLITS.map((s) => [s, splits[s].length])) };
    await writeJson(path.join(ctx.outDir, 'stats.json'), stats);
    if (stats.overBudget > 0) ctx.log.warn(`${stats.overBudget} of ${stats.prompts} prompts exceed maxTokens ${ctx.params.maxTokens} (system prompt included) even without facts, exemplars and description; they are kept whole`);
    ctx.metrics.log(0, { prompts: stats.prompts, meanTokens: stats.meanTokens, maxTokens: stats.maxTokens, overBudget: stats.overBudget });
    return { metrics: stats };
  },
});
