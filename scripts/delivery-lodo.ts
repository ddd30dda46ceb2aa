/**
 * How the delivered judge's selection settings (stages/eval/delivery.ts: the pool-weight grid, whole
 * ensemble or every subset, the one-SE multiple) were chosen: leave-one-dataset-out over every
 * non-test set at hand. For each set, eval's dev predictions (an eval stage run with `split: dev`)
 * and the learned lexical model fitted on its train split; for each setting, the nested
 * cross-validated dev figures of the whole selection. Each set in turn is held out: the setting
 * with the best mean nested objective ((macro-F1 + QWK) / 2) on the others is scored on it. Test is
 * never read.
 *
 *   npx tsx scripts/delivery-lodo.ts chorus=<store>/refs/<pipeline> esci=... [--out lodo.json]
 *
 * Each argument names a store's refs folder for one pipeline, whose `eval` (split: dev) and `icl`
 * (the prompts) refs are read.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../pipeline/rng.ts';
import { chooseDelivered, EXHAUSTIVE_SELECTION, nestedSelection, SELECTION, type JudgeInputs, type SelectionSettings } from '../stages/eval/delivery.ts';
import type { Prediction } from '../stages/eval/predictions.ts';
import { bootstrapIntervals, classificationMetrics, describeShares, judgeDegeneracy } from '../stages/lib/relevance/grade-agreement.ts';
import { fitLearnedBaseline } from '../stages/lib/relevance/learned-baseline.ts';
import type { Grade } from '../stages/lib/relevance/types.ts';
import { readPromptRecords } from '../stages/lib/artifacts/prompts.ts';

interface DevSet {
  name: string;
  inputs: JudgeInputs;
  ensemble: string[];
  baselines: Record<string, { macroF1: number; qwk: number | null; intervals: { macroF1: [number, number]; qwk: [number, number] | null } }>;
}

async function loadSet(name: string, refs: string): Promise<DevSet> {
  const objects = join(refs, '..', '..', 'objects');
  const object = (stage: string) => join(objects, readFileSync(join(refs, stage), 'utf8').trim());
  const evalDir = object('eval');
  const manifest = JSON.parse(readFileSync(join(evalDir, 'manifest.json'), 'utf8')) as { params: { split: string; ensemble?: string[] } };
  if (manifest.params.split !== 'dev') throw new Error(`${evalDir}: eval ran on ${manifest.params.split}; this study reads dev only`);
  const metrics = JSON.parse(readFileSync(join(evalDir, 'metrics.json'), 'utf8')) as { checkpoints: Record<string, unknown>; baseline?: DevSet['baselines'][string]; learnedBaseline?: DevSet['baselines'][string] };
  const rows = readFileSync(join(evalDir, 'predictions.jsonl'), 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Prediction);
  const names = Object.keys(metrics.checkpoints);
  const promptsDir = object('icl');
  const [train, dev] = [await readPromptRecords(promptsDir, 'train'), await readPromptRecords(promptsDir, 'dev')];
  const byId = new Map(dev.map((r) => [r.id, r.example]));
  const first = rows.filter((r) => r.model === names[0]);
  const examples = first.map((r) => {
    const example = byId.get(r.id);
    if (!example) throw new Error(`${evalDir}: prediction ${r.id} is not a dev example of ${promptsDir}`);
    return example;
  });
  const checkpoints = new Map(
    names.map((n) => {
      const own = new Map(rows.filter((r) => r.model === n).map((r) => [r.id, r]));
      return [n, first.map((r) => own.get(r.id) as Prediction)];
    }),
  );
  const lexical = fitLearnedBaseline(train.map((r) => r.example));
  return {
    name,
    inputs: { examples, checkpoints, lexical: examples.map((e) => lexical.probabilities(e)) },
    ensemble: manifest.params.ensemble ?? [],
    baselines: { ...(metrics.baseline ? { bm25: metrics.baseline } : {}), ...(metrics.learnedBaseline ? { learned: metrics.learnedBaseline } : {}) },
  };
}

const stream = (seed: number, name: string) => {
  const rng = new Rng(seed, name);
  return () => rng.next();
};

/** The coarse pool-weight grid tried against tenths. */
const COARSE = [0, 0.25, 0.5, 0.75];

function settingName(s: SelectionSettings): string {
  return `weights ${s.lexicalWeights.length === COARSE.length ? 'coarse' : 'tenths'}, ${s.ensembles}, ${s.seMultiple} SE`;
}

const settingsGrid: SelectionSettings[] = [];
for (const lexicalWeights of [COARSE, EXHAUSTIVE_SELECTION.lexicalWeights])
  for (const ensembles of ['whole', 'subsets'] as const) for (const seMultiple of [0, 0.25, 0.5, 1, 2]) settingsGrid.push({ lexicalWeights, ensembles, seMultiple });

interface Score {
  macroF1: number;
  qwk: number | null;
  objective: number;
  intervals: ReturnType<typeof bootstrapIntervals>;
  shares: string;
  degenerate: boolean;
}

function score(golds: readonly Grade[], predictions: readonly Prediction[], seed: number): Score {
  const pairs = golds.map((gold, i) => ({ gold, predicted: (predictions[i] as Prediction).predicted ?? undefined }));
  const m = classificationMetrics(pairs);
  const d = judgeDegeneracy(pairs);
  return { macroF1: m.macroF1, qwk: m.qwk, objective: (m.macroF1 + (m.qwk ?? 0)) / 2, intervals: bootstrapIntervals(pairs, stream(seed, 'bootstrap')), shares: describeShares(d.predictedShares), degenerate: d.degenerate };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const outAt = args.indexOf('--out');
  const out = outAt >= 0 ? args[outAt + 1] : undefined;
  const named = args.filter((a, i) => a.includes('=') && i !== outAt + 1);
  if (named.length < 2) throw new Error('usage: npx tsx scripts/delivery-lodo.ts <name>=<store>/refs/<pipeline> ... (two or more sets) [--out file.json]');
  const sets = await Promise.all(named.map((a) => loadSet(a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1))));
  const seed = 13;
  const results: Record<string, Record<string, { nested: Score; crossFitted: Score; chosen: string; nestedChosen: string[] }>> = {};
  for (const set of sets) {
    const golds = set.inputs.examples.map((e) => e.label);
    const goldShares = describeShares(judgeDegeneracy(golds.map((gold) => ({ gold, predicted: gold }))).goldShares);
    console.log(`\n## ${set.name}: ${golds.length} dev pairs over ${new Set(set.inputs.examples.map((e) => e.query)).size} queries; gold ${goldShares}; checkpoints ${[...set.inputs.checkpoints.keys()].join(', ')}; ensemble ${set.ensemble.join(', ') || 'none'}`);
    for (const [b, s] of Object.entries(set.baselines)) console.log(`  ${b} baseline: macro-F1 ${s.macroF1.toFixed(3)} [${s.intervals.macroF1.map((x) => x.toFixed(3)).join(', ')}], QWK ${s.qwk?.toFixed(3)} [${s.intervals.qwk?.map((x) => x.toFixed(3)).join(', ')}]`);
    results[set.name] = {};
    for (const settings of settingsGrid) {
      const started = performance.now();
      const chosen = chooseDelivered('delivered', set.inputs, set.ensemble, stream(seed, 'delivery-folds'), settings);
      const nested = nestedSelection('nested', set.inputs, set.ensemble, stream(seed, 'delivery-nested'), settings);
      const entry = { nested: score(golds, nested.predictions, seed), crossFitted: score(golds, chosen.predictions, seed), chosen: chosen.delivered.name, nestedChosen: nested.nested.chosen };
      (results[set.name] as Record<string, typeof entry>)[settingName(settings)] = entry;
      const f = (s: Score) => `macro-F1 ${s.macroF1.toFixed(3)} [${s.intervals.macroF1.map((x) => x.toFixed(3)).join(', ')}], QWK ${s.qwk?.toFixed(3)} [${s.intervals.qwk?.map((x) => x.toFixed(3)).join(', ') ?? 'n/a'}]`;
      console.log(`  ${settingName(settings)} (${((performance.now() - started) / 1000).toFixed(1)} s): ${entry.chosen}; cross-fitted ${f(entry.crossFitted)}; nested ${f(entry.nested)}${entry.nested.degenerate ? ' DEGENERATE' : ''}; nested shares ${entry.nested.shares}; folds ${nested.nested.folds.examples.join('/')}`);
    }
  }
  console.log('\n## leave one dataset out (objective = (macro-F1 + QWK) / 2, nested)');
  const names = settingsGrid.map(settingName);
  for (const held of sets) {
    const others = sets.filter((s) => s !== held);
    const mean = (setting: string) => others.reduce((sum, s) => sum + (results[s.name]?.[setting]?.nested.objective ?? 0), 0) / others.length;
    // Ties go to the earlier setting: coarse before tenths, whole before subsets, fewer SE first.
    const best = names.reduce((a, b) => (mean(b) > mean(a) + 1e-12 ? b : a));
    const on = (setting: string) => results[held.name]?.[setting]?.nested.objective.toFixed(3);
    console.log(`  held out ${held.name}: chosen on the others "${best}" (mean ${mean(best).toFixed(3)}); on ${held.name} ${on(best)}; shipped "${settingName(SELECTION)}" ${on(settingName(SELECTION))}; exhaustive ${on(settingName(EXHAUSTIVE_SELECTION))}`);
  }
  const overall = (setting: string) => sets.reduce((sum, s) => sum + (results[s.name]?.[setting]?.nested.objective ?? 0), 0) / sets.length;
  for (const setting of names) console.log(`  mean over all sets, ${setting}: ${overall(setting).toFixed(3)}`);
  if (out) writeFileSync(out, JSON.stringify(results, null, 1));
}

await main();
