/**
 * DeepBoW variants against labels the judge already gave, in seconds instead of a relabelling: reads
 * a built distill artifact (teacher.jsonl: the pool's judge labels; dev.jsonl: the dev pairs with
 * gold and the judge's grade), retrains the distilled model on the pool and reports, on DEV only,
 * its agreement with the judge, Acc@2 and Acc@4, and the routing chooseRoute would pick (the share
 * of dev pairs sent to the LLM at the tolerance), with pairs scored per CPU-second.
 *
 *   npx tsx bench/distill.ts <store>/objects/<distill fingerprint> [--kg] [--epochs 10] [--lr 0.2] [--l1 0.001] [--hard]
 *
 * Head-tier caching is read from the store's query log as the precompute stage does (tiers: head).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Manifest } from '../pipeline/stage-api.ts';
import type { DevJudgement } from '../stages/lib/artifacts/distilled.ts';
import { classificationMetrics } from '../stages/lib/relevance/grade-agreement.ts';
import { readSplits } from '../stages/lib/artifacts/dataset.ts';
import { readJsonl } from '../stages/lib/io/jsonl.ts';
import { loadKnowledgeGraph } from '../stages/lib/relevance/kg.ts';
import { indexQueryLog, QUERY_LOG_FILE, readQueryLog } from '../stages/lib/relevance/query-log.ts';
import { normalise } from '../stages/lib/relevance/text.ts';
import { isRelevant, type Grade, type Item } from '../stages/lib/relevance/types.ts';
import { judgeItems, synonymTable, trainDeepBow, type DeepBowExample } from '../stages/lib/serving/deepbow.ts';
import { chooseRoute, routeDev, routingTier } from '../stages/lib/serving/deployment.ts';
import { oneHot } from '../stages/lib/serving/label.ts';
import { Rng } from '../pipeline/rng.ts';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    kg: { type: 'boolean', default: false },
    hard: { type: 'boolean', default: false },
    epochs: { type: 'string', default: '10' },
    lr: { type: 'string', default: '0.2' },
    l1: { type: 'string', default: '0.001' },
    'min-count': { type: 'string', default: '2' },
    tolerance: { type: 'string', default: '0.02' },
  },
});
const distillDir = positionals[0];
if (!distillDir) throw new Error('usage: npx tsx bench/distill.ts <store>/objects/<distill fingerprint> [--kg] …');
const objects = path.dirname(distillDir);
const manifest = JSON.parse(readFileSync(path.join(distillDir, 'manifest.json'), 'utf8')) as Manifest;
// The needs by the kind of artifact they made (a config names its stages as it likes).
const inputOfKind = (kind: string) => {
  const dirs = Object.values(manifest.inputs).map((fingerprint) => path.join(objects, fingerprint));
  const dir = dirs.find((d) => (JSON.parse(readFileSync(path.join(d, 'manifest.json'), 'utf8')) as Manifest).kind === kind);
  if (!dir) throw new Error(`${distillDir}/manifest.json: no input of kind ${kind}`);
  return dir;
};
const worldDir = inputOfKind('dataset');
const kgDir = inputOfKind('kg');

const splits = await readSplits(worldDir);
// A pool pair is a train pair (by its id) or an ungraded catalog item of a train query (by item id).
const catalogFile = path.join(worldDir, 'catalog.jsonl');
const catalog = new Map(existsSync(catalogFile) ? (await readJsonl<Item>(catalogFile)).map((i) => [i.id as string, i]) : []);
const trainItems = new Map(splits.train.map((e) => [e.id, e.item]));
const teacher = await readJsonl<{ id: string; grade: Grade | null; probabilities: Record<Grade, number> | null; query: string; item_id?: string }>(path.join(distillDir, 'teacher.jsonl'));
const devRows = await readJsonl<DevJudgement>(path.join(distillDir, 'dev.jsonl'));
const devItems = new Map(splits.dev.map((e) => [e.id, e.item]));
const kg = await loadKnowledgeGraph(kgDir);
// Without a query log every query is new and nothing is cached.
const logFile = path.join(worldDir, QUERY_LOG_FILE);
const log = indexQueryLog(existsSync(logFile) ? await readQueryLog(logFile) : []);

const examples: DeepBowExample[] = teacher
  .filter((t) => t.grade !== null)
  .map((t) => ({ query: t.query, item: (trainItems.get(t.id) ?? catalog.get(t.item_id as string)) as Item, target: flags.hard || !t.probabilities ? oneHot(t.grade as Grade) : t.probabilities }));
const rng = new Rng(13);
const started = process.cpuUsage();
const model = trainDeepBow(examples, {
  epochs: Number(flags.epochs),
  lr: Number(flags.lr),
  l1: Number(flags.l1),
  minCount: Number(flags['min-count']),
  synonyms: synonymTable(kg.aliases.values(), kg.knowledge.needs),
  ...(flags.kg ? { kg } : {}),
  shuffle: (xs) => rng.shuffle(xs),
});
const trainCpuS = cpuSeconds(started);

const scoring = process.cpuUsage();
const judged = devRows.map((r) => judgeItems(model, r.query, [devItems.get(r.id) as Item], kg)[0]!);
const scoreCpuS = cpuSeconds(scoring);
const dev = devRows.map((r, i) => {
  const entry = log.get(normalise(r.query));
  return { gold: r.gold, cached: entry?.tier === 'head', tier: routingTier(entry), llm: r.llm.grade, distilled: judged[i]!.grade, confidence: judged[i]!.confidence };
});
const metrics = classificationMetrics(dev.map((d) => ({ gold: d.gold, predicted: d.distilled })));
const route = chooseRoute(dev, Number(flags.tolerance));
// What more LLM calls would buy: dev Acc@2 when the least confident 0, 2, 5 and 10 % of the
// uncached dev pairs go to the LLM (every tier may reach it).
const confidences = dev.filter((d) => !d.cached).map((d) => d.confidence).sort((a, b) => a - b);
const acc2 = (grades: (Grade | null)[]) => grades.filter((g, i) => g !== null && isRelevant(g) === isRelevant(dev[i]!.gold)).length / dev.length;
const tradeOff = [0, 0.02, 0.05, 0.1].map((share) => {
  const threshold = share === 0 ? 0 : confidences[Math.round(share * confidences.length)]!;
  const routed = dev.map((d) => routeDev(d, threshold, ['new', 'tail', 'torso', 'head']));
  return { llm_share: routed.filter((r) => r.tier === 'llm').length / dev.length, tiered_acc2: acc2(routed.map((r) => r.grade)) };
});
console.log(
  JSON.stringify({
    flags,
    examples: examples.length,
    dev_agreement_with_llm: dev.filter((d) => d.llm === d.distilled).length / dev.length,
    dev_acc2: metrics.acc2,
    dev_acc4: metrics.acc4,
    dev_llm_share: route.devLlmShare,
    dev_tiered_acc2: route.devTieredAcc2,
    dev_llm_acc2: route.devLlmAcc2,
    min_confidence: route.minConfidence,
    llm_tiers: route.llmTiers,
    trade_off: tradeOff,
    train_cpu_s: trainCpuS,
    dev_pairs_per_cpu_s: devRows.length / scoreCpuS,
    features: model.features,
  }),
);

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}
