/**
 * The cost of running reward files in the reward worker (stages/lib/rl/reward-files.ts) rather than on the main
 * thread: the example reward file scored on GRPO-sized batches (8 prompts x 4 completions, prompts
 * of ~2 KB like the relevance prompts), first called in this thread (the module imported directly:
 * what the pipeline did before the worker), then through the worker. Prints ms per batch for both
 * and their ratio; last line is JSON.
 *
 *   npx tsx bench/rewards.ts [batches]
 */
import * as path from 'node:path';
import { importUserModule } from '../pipeline/user-module.ts';
import { parseCompletion, renderCompletion, type ReasoningSteps } from '../stages/lib/relevance/completion.ts';
import { closeRewards, loadRewards, scoreBatch, type LoadedReward, type RewardFunction, type RewardInput } from '../stages/lib/rl/rewards.ts';

const BATCHES = Number(process.argv[2] ?? 300);
const BATCH_SIZE = 32;
const repoRoot = path.resolve(import.meta.dirname, '..');
const file = './examples/rewards/rule-citation.ts';

const reference: ReasoningSteps = {
  query: { product: 'phone case', constraints: { compatibility: 'iphone 15' }, intent: 'protect phone' },
  item: { product: 'phone case', category: ['Electronics', 'Phone Accessories', 'Cases'], attributes: { compatibility: 'iphone 14' } },
  category: { relation: 'match', path: 'phone case is-a case' },
  attributes: { compatibility: 'conflict' },
  rules: ['R-COMPAT'],
};
const completion = renderCompletion(reference, 'L2');
const batch: RewardInput[] = Array.from({ length: BATCH_SIZE }, (_, i) => ({
  id: `q${i}`,
  prompt: `Query: phone case for iphone 15 ${'and a long product description '.repeat(64)}`,
  completion,
  parsed: parseCompletion(completion),
  gold: 'L2',
  meta: { capabilities: ['reasoning'], difficulty: 'hard', rules: ['R-COMPAT'], source: 'world' },
  reference,
}));

async function msPerBatch(rewards: readonly LoadedReward[]): Promise<number> {
  for (let i = 0; i < 20; i++) await scoreBatch(rewards, batch); // warm-up
  const start = performance.now();
  for (let i = 0; i < BATCHES; i++) await scoreBatch(rewards, batch);
  return (performance.now() - start) / BATCHES;
}

const module = await importUserModule(path.resolve(repoRoot, file));
const inThread: LoadedReward = { name: 'rule-citation', weight: 1, params: { penalty: 0.5 }, fn: module.default as RewardFunction };
const threadMs = await msPerBatch([inThread]);
const worker = await loadRewards([{ use: file, weight: 1, with: { penalty: 0.5 } }], repoRoot);
const workerMs = await msPerBatch(worker);
await closeRewards(worker);

console.log(`${BATCHES} batches of ${BATCH_SIZE} completions, one reward file`);
console.log(`  in this thread: ${threadMs.toFixed(3)} ms per batch`);
console.log(`  in the worker:  ${workerMs.toFixed(3)} ms per batch (${(workerMs / threadMs).toFixed(1)}x)`);
console.log(JSON.stringify({ batches: BATCHES, batch_size: BATCH_SIZE, in_thread_ms_per_batch: threadMs, worker_ms_per_batch: workerMs, ratio: workerMs / threadMs }));
