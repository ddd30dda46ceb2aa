/**
 * The eval stage end to end through the CLI: world -> kg -> icl -> two tiny untrained checkpoints
 * (one answer-first) -> eval, then `pipeline report`. The model's output is garbage, so the test
 * checks what must hold whatever the model says: every figure in metrics.json agrees with the
 * predictions it summarises, the answer-first grade is the cumulative partition of the recorded
 * probabilities, the baseline is the fitted lexical baseline, a pooled row is the median of the
 * checkpoint's and the learned lexical model's geometric pool, and the report embeds the eval.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fragmentProblem } from '../../pipeline/report/fragment.ts';
import { cumulativeGrade } from '../../stages/lib/relevance/grade-pooling.ts';
import type { EvalMetrics } from '../../stages/eval/eval-metrics.ts';
import type { Prediction } from '../../stages/eval/predictions.ts';
import { parseCompletion } from '../../stages/lib/relevance/completion.ts';
import { lexicalBaseline } from '../../stages/lib/relevance/baseline.ts';
import { fitLearnedBaseline } from '../../stages/lib/relevance/learned-baseline.ts';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import type { PromptRecord } from '../../stages/lib/relevance/prompts.ts';
import { GRADES, type Grade } from '../../stages/lib/relevance/types.ts';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'pipeline.js');
const fixture = path.join(import.meta.dirname, 'eval-fixtures', 'tiny-checkpoint.ts');
const dir = mkdtempSync(path.join(os.tmpdir(), 'eval-stage-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = `name: evt
seed: 3
store: store
stages:
  world: { uses: world, with: { queries: 24, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  icl: { uses: icl, needs: [world, kg], with: { facts: 2, shots: 0, rules: none, maxTokens: 256 } }
  sft: { uses: ${fixture}, needs: [icl] }
  post: { uses: ${fixture}, needs: [icl], with: { answer_first: true } }
  eval: { uses: eval, needs: [sft, post, icl, kg], with: { limit: 6, dev_limit: 6, batch_size: 6, max_new_tokens: 12 } }
  median: { uses: eval, needs: [sft, icl, kg], with: { limit: 6, batch_size: 6, max_new_tokens: 12, grade: median } }
  pooled: { uses: eval, needs: [sft, post, icl, kg], with: { limit: 6, dev_limit: 6, batch_size: 6, max_new_tokens: 12, lexical_pool: 0.25 } }
  ensemble: { uses: eval, needs: [sft, post, icl, kg], with: { limit: 6, dev_limit: 6, batch_size: 6, max_new_tokens: 12, lexical_pool: 0.25, ensemble: [sft, post] } }
`;

const cli = (...args: string[]) => execFileSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const artifact = (stage: string) => path.join(dir, 'store', 'objects', readFileSync(path.join(dir, 'store', 'refs', 'evt', stage), 'utf8').trim());

let metrics: EvalMetrics;
let predictions: Prediction[];
let runOutput = '';
beforeAll(async () => {
  writeFileSync(path.join(dir, 'pipeline.yaml'), CONFIG);
  runOutput = cli('run', 'pipeline.yaml');
  metrics = JSON.parse(readFileSync(path.join(artifact('eval'), 'metrics.json'), 'utf8')) as EvalMetrics;
  predictions = await readJsonl<Prediction>(path.join(artifact('eval'), 'predictions.jsonl'));
}, 120_000);

const of = (model: string) => predictions.filter((p) => p.model === model);

/** p ∝ judge^(1-w) · lexical^w, renormalised, written out here rather than taken from the code under test. */
function geometricPool(judge: Record<Grade, number>, lexical: Record<Grade, number>, w: number): Record<Grade, number> {
  const raw = GRADES.map((g) => judge[g] ** (1 - w) * lexical[g] ** w);
  const total = raw.reduce((a, b) => a + b, 0);
  return Object.fromEntries(GRADES.map((g, k) => [g, raw[k]! / total])) as Record<Grade, number>;
}
/** The median grade: the highest whose cumulative probability from L4 down reaches 1/2. */
const medianGrade = (probs: Record<Grade, number>) => GRADES[[3, 2, 1, 0].find((g) => GRADES.slice(g).reduce((s, grade) => s + probs[grade], 0) >= 0.5) ?? 0];
const trainExamples = async () => (await readJsonl<PromptRecord>(path.join(artifact('icl'), 'train.jsonl'))).map((r) => r.example);

describe('eval stage', () => {
  it('evaluates every checkpoint and the baseline on the same sampled test examples', async () => {
    expect(runOutput).toMatch(/succeeded: 9 built/);
    expect(metrics.examples).toBe(6);
    expect(metrics.comparison.map((r) => [r.model, r.kind])).toEqual([
      ['sft', 'checkpoint'],
      ['post', 'checkpoint'],
      ['delivered', 'delivered'],
      ['baseline', 'baseline'],
      ['learned-baseline', 'baseline'],
    ]);
    const test = new Set((await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).map((r) => r.id));
    const ids = of('sft').map((p) => p.id);
    expect(ids).toHaveLength(6);
    for (const id of ids) expect(test.has(id)).toBe(true);
    expect(of('post').map((p) => p.id)).toEqual(ids);
    expect(of('baseline').map((p) => p.id)).toEqual(ids);
    expect(of('learned-baseline').map((p) => p.id)).toEqual(ids);
  });

  it('reports figures that agree with the predictions they summarise', () => {
    for (const row of metrics.comparison) {
      const rows = of(row.model);
      // Acc@4 is the share of exact grades; a missing grade is wrong.
      expect(row.acc4).toBeCloseTo(rows.filter((p) => p.predicted === p.gold).length / rows.length, 12);
      const summary = row.model === 'learned-baseline' ? metrics.learnedBaseline : row.kind === 'baseline' ? metrics.baseline : row.kind === 'delivered' ? metrics.delivered?.summary : metrics.checkpoints[row.model];
      const cells = GRADES.flatMap((g) => [...GRADES, 'none' as const].map((p) => summary?.confusion[g][p] ?? 0));
      expect(cells.reduce((a, b) => a + b, 0)).toBe(6);
      // Each figure comes with its 95% bootstrap interval, which brackets it.
      const [low, high] = row.intervals.acc4;
      expect(low).toBeLessThanOrEqual(row.acc4);
      expect(high).toBeGreaterThanOrEqual(row.acc4);
      expect(row.intervals.level).toBe(0.95);
    }
    for (const model of ['sft', 'post']) {
      const rows = of(model);
      expect(metrics.checkpoints[model]?.formatValidity).toBeCloseTo(rows.filter((p) => p.formatOk).length / 6, 12);
      expect(metrics.checkpoints[model]?.stepVerificationRate).toBeCloseTo(rows.reduce((s, p) => s + (p.stepsVerified ?? 0), 0) / 30, 12);
    }
  });

  it('delivers a judge chosen on dev and applies it, as fitted on dev, to the test pairs; its degeneracy is a quality check', async () => {
    const delivered = metrics.delivered!;
    const dev = await readJsonl<PromptRecord>(path.join(artifact('icl'), 'dev.jsonl'));
    expect(delivered.fittedOn).toMatchObject({ split: 'dev', examples: Math.min(6, dev.length) });
    expect(delivered.folds.examples.reduce((a, b) => a + b, 0)).toBe(delivered.fittedOn.examples);
    // The selection's nested estimate: every dev pair scored by a judge chosen without its outer fold.
    expect(delivered.fittedOn.queries).toBeGreaterThanOrEqual(2);
    expect(delivered.nested?.folds.examples.reduce((a, b) => a + b, 0)).toBe(delivered.fittedOn.examples);
    expect(delivered.nested?.summary.count).toBe(delivered.fittedOn.examples);
    expect(delivered.nested?.chosen).toHaveLength(delivered.nested!.folds.count);
    const rows = of('delivered');
    expect(rows.map((p) => p.id)).toEqual(of('sft').map((p) => p.id));
    // Recomputed here from the members' test rows and the learned lexical model.
    const { members, lexicalWeight, rule, cutPoints } = delivered.definition;
    const learned = fitLearnedBaseline(await trainExamples());
    const test = new Map((await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).map((r) => [r.id, r.example]));
    rows.forEach((row, i) => {
      const lexical = learned.probabilities(test.get(row.id)!);
      const read = members.map((m) => of(m)[i]!);
      if (rule === 'answer') return expect(row.predicted).toBe(parseCompletion(read[0]!.completion ?? '').label ?? null);
      const probsOf = read.map((r) => r.gradeProbs!);
      const raw = GRADES.map((g) => probsOf.reduce((product, m) => product * m[g] ** (1 / probsOf.length), 1));
      const total = raw.reduce((a, b) => a + b, 0);
      const judged = Object.fromEntries(GRADES.map((g, k) => [g, raw[k]! / total])) as Record<Grade, number>;
      const probs = lexicalWeight === 1 ? lexical : geometricPool(judged, lexical, lexicalWeight);
      const expectedGrade = GRADES.reduce((sum, g, k) => sum + (k + 1) * probs[g], 0);
      const [t1, t2, t3] = cutPoints ?? [];
      const expected = rule === 'median' ? medianGrade(probs) : expectedGrade < t1! ? 'L1' : expectedGrade < t2! ? 'L2' : expectedGrade < t3! ? 'L3' : 'L4';
      expect(row.predicted).toBe(expected);
    });
    const manifest = JSON.parse(readFileSync(path.join(artifact('eval'), 'manifest.json'), 'utf8')) as { checks: { name: string; passed: boolean }[]; metrics: { degenerate: boolean } };
    expect(manifest.checks).toEqual([expect.objectContaining({ name: 'delivered-judge-not-degenerate', passed: !metrics.degenerate })]);
    expect(manifest.metrics.degenerate).toBe(metrics.degenerate);
    expect(metrics.degeneracy?.predictedShares).toBeDefined();
  });

  it('reads the grade of a plain checkpoint from its answer, of an answer-first one from the cumulative partition', () => {
    for (const p of of('sft')) expect(p.predicted).toBe(parseCompletion(p.completion ?? '').label ?? null);
    const threshold = metrics.checkpoints.post?.threshold;
    expect(threshold?.tuningExamples).toBe(6);
    expect(threshold?.threshold).toBeGreaterThan(0);
    expect(threshold?.threshold).toBeLessThanOrEqual(1);
    for (const p of of('post')) {
      const probs = p.gradeProbs as NonNullable<Prediction['gradeProbs']>;
      expect(GRADES.reduce((s, g) => s + probs[g], 0)).toBeCloseTo(1, 9);
      expect(p.predicted).toBe(cumulativeGrade(probs, threshold?.threshold ?? NaN));
    }
  });

  it('with grade: median, reads a plain checkpoint\'s grade as the median of its answer probabilities after its reasoning', async () => {
    const median = (await readJsonl<Prediction>(path.join(artifact('median'), 'predictions.jsonl'))).filter((p) => p.model === 'sft');
    expect(median).toHaveLength(6);
    for (const p of median) {
      // The completion and its format are still the greedy text's; only the grade is read differently.
      expect(p.formatOk).toBe(parseCompletion(p.completion ?? '').formatOk);
      const probs = p.gradeProbs as NonNullable<Prediction['gradeProbs']>;
      expect(GRADES.reduce((s, g) => s + probs[g], 0)).toBeCloseTo(1, 9);
      // The median: the highest grade whose cumulative probability from L4 down reaches 1/2.
      const cumulative = (g: number) => GRADES.slice(g).reduce((s, grade) => s + probs[grade], 0);
      const expected = GRADES[[3, 2, 1, 0].find((g) => cumulative(g) >= 0.5) ?? 0];
      expect(p.predicted).toBe(expected);
    }
  });

  it('pipeline score --grade median gives the served judge the same reading', async () => {
    const test = (await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).slice(0, 3);
    writeFileSync(path.join(dir, 'pairs.jsonl'), test.map((r) => JSON.stringify({ id: r.id, query: r.example.query, item: r.example.item })).join('\n'));
    cli('score', 'pipeline.yaml', '--model', 'sft', '--input', 'pairs.jsonl', '--output', 'scored.jsonl', '--max-new-tokens', '12', '--grade', 'median');
    const rows = await readJsonl<{ id: string; grade: string | null; probabilities: Record<string, number> }>(path.join(dir, 'scored.jsonl'));
    expect(rows.map((r) => r.id)).toEqual(test.map((r) => r.id));
    // The untrained model rarely writes an answer; read as the median, every pair still gets one.
    for (const r of rows) expect(r.grade).toBe(cumulativeGrade(r.probabilities as never, 0.5));
  });

  it('with lexical_pool, adds each checkpoint pooled with the learned lexical baseline: the median of their geometric pool', async () => {
    const pooledDir = artifact('pooled');
    const pooledMetrics = JSON.parse(readFileSync(path.join(pooledDir, 'metrics.json'), 'utf8')) as EvalMetrics;
    expect(pooledMetrics.comparison.map((r) => [r.model, r.kind])).toEqual([
      ['sft', 'checkpoint'],
      ['sft+lexical', 'pooled'],
      ['post', 'checkpoint'],
      ['post+lexical', 'pooled'],
      ['delivered', 'delivered'],
      ['baseline', 'baseline'],
      ['learned-baseline', 'baseline'],
    ]);
    const rows = await readJsonl<Prediction>(path.join(pooledDir, 'predictions.jsonl'));
    const learned = fitLearnedBaseline(await trainExamples());
    const test = new Map((await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).map((r) => [r.id, r.example]));
    for (const model of ['sft', 'post']) {
      const judged = rows.filter((p) => p.model === model);
      const pooled = rows.filter((p) => p.model === `${model}+lexical`);
      expect(pooled.map((p) => p.id)).toEqual(judged.map((p) => p.id));
      expect(judged.filter((j) => j.gradeProbs).length).toBeGreaterThan(0);
      judged.forEach((j, i) => {
        const p = pooled[i]!;
        if (!j.gradeProbs) return expect(p.predicted).toBeNull();
        const expected = geometricPool(j.gradeProbs, learned.probabilities(test.get(j.id)!), 0.25);
        for (const g of GRADES) expect(p.gradeProbs?.[g]).toBeCloseTo(expected[g], 9);
        expect(p.predicted).toBe(medianGrade(expected));
      });
      const summary = pooledMetrics.pooled?.[`${model}+lexical`];
      expect(summary?.weight).toBe(0.25);
      expect(summary?.acc4).toBeCloseTo(pooled.filter((p) => p.predicted === p.gold).length / pooled.length, 12);
    }
    // Pooling needs the probabilities, not the median reading: sft's own grade is still the answer it wrote.
    for (const p of rows.filter((r) => r.model === 'sft')) expect(p.predicted).toBe(parseCompletion(p.completion ?? '').label ?? null);
  });

  it('with ensemble, adds a row judging by the median of its members\' geometric mean, and that row pooled', async () => {
    const ensembleDir = artifact('ensemble');
    const ensembleMetrics = JSON.parse(readFileSync(path.join(ensembleDir, 'metrics.json'), 'utf8')) as EvalMetrics;
    expect(ensembleMetrics.comparison.map((r) => [r.model, r.kind])).toEqual([
      ['sft', 'checkpoint'],
      ['sft+lexical', 'pooled'],
      ['post', 'checkpoint'],
      ['post+lexical', 'pooled'],
      ['ensemble', 'ensemble'],
      ['ensemble+lexical', 'pooled'],
      ['delivered', 'delivered'],
      ['baseline', 'baseline'],
      ['learned-baseline', 'baseline'],
    ]);
    const rows = await readJsonl<Prediction>(path.join(ensembleDir, 'predictions.jsonl'));
    const [sft, post, ensemble, pooled] = ['sft', 'post', 'ensemble', 'ensemble+lexical'].map((model) => rows.filter((p) => p.model === model)) as Prediction[][];
    const learned = fitLearnedBaseline(await trainExamples());
    const test = new Map((await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).map((r) => [r.id, r.example]));
    expect(ensemble!.map((p) => p.id)).toEqual(sft!.map((p) => p.id));
    ensemble!.forEach((e, i) => {
      // Each member's probabilities, weight 1/2 each where both have them.
      const members = [sft![i]!, post![i]!].flatMap((m) => (m.gradeProbs ? [m.gradeProbs] : []));
      if (members.length === 0) return expect(e.predicted).toBeNull();
      const raw = GRADES.map((g) => members.reduce((product, m) => product * m[g] ** (1 / members.length), 1));
      const total = raw.reduce((a, b) => a + b, 0);
      const expected = Object.fromEntries(GRADES.map((g, k) => [g, raw[k]! / total])) as Record<Grade, number>;
      for (const g of GRADES) expect(e.gradeProbs?.[g]).toBeCloseTo(expected[g], 9);
      expect(e.predicted).toBe(medianGrade(expected));
      expect(e.latencyMs).toBeCloseTo(sft![i]!.latencyMs + post![i]!.latencyMs, 9);
      const pooledExpected = geometricPool(expected, learned.probabilities(test.get(e.id)!), 0.25);
      expect(pooled![i]!.predicted).toBe(medianGrade(pooledExpected));
    });
    // A member's probabilities are read whatever its own row's reading: sft has them all.
    expect(sft!.every((p) => p.gradeProbs)).toBe(true);
    expect(ensembleMetrics.ensemble?.members).toEqual(['sft', 'post']);
    expect(ensembleMetrics.ensemble?.acc4).toBeCloseTo(ensemble!.filter((p) => p.predicted === p.gold).length / ensemble!.length, 12);
    expect(ensembleMetrics.ensemble?.formatValidity).toBeNull();
  });

  it('refuses, before anything runs, an ensemble member that is not in needs', () => {
    writeFileSync(path.join(dir, 'bad-ensemble.yaml'), CONFIG.replace('ensemble: [sft, post]', 'ensemble: [sft, dpo]'));
    expect(() => cli('validate', 'bad-ensemble.yaml')).toThrow(/bad-ensemble\.yaml:13:\d+: error: stages\.ensemble\.with\.ensemble\[1\]: ensemble member dpo is not in needs \(sft, post, icl, kg\); add it there/);
  });

  it('pipeline score --lexical-pool serves the pooled judge, and refuses a weight outside 0 to 1', async () => {
    const test = (await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).slice(0, 3);
    writeFileSync(path.join(dir, 'pool-pairs.jsonl'), test.map((r) => JSON.stringify({ id: r.id, query: r.example.query, item: r.example.item })).join('\n'));
    const score = (out: string, ...extra: string[]) => cli('score', 'pipeline.yaml', '--model', 'sft', '--input', 'pool-pairs.jsonl', '--output', out, '--max-new-tokens', '12', '--grade', 'median', ...extra);
    score('plain.jsonl');
    score('pooled.jsonl', '--lexical-pool', '0.25');
    type Row = { id: string; grade: Grade | null; probabilities: Record<Grade, number> };
    const [plain, pooled] = [await readJsonl<Row>(path.join(dir, 'plain.jsonl')), await readJsonl<Row>(path.join(dir, 'pooled.jsonl'))];
    const learned = fitLearnedBaseline(await trainExamples());
    pooled.forEach((row, i) => {
      const expected = geometricPool(plain[i]!.probabilities, learned.probabilities(test[i]!.example), 0.25);
      for (const g of GRADES) expect(row.probabilities[g]).toBeCloseTo(expected[g], 9);
      expect(row.grade).toBe(medianGrade(expected));
    });
    expect(() => score('bad.jsonl', '--lexical-pool', '1.5')).toThrow(/--lexical-pool.*expected a number from 0 to 1/s);
  });

  it('pipeline score --ensemble serves the ensemble eval measured, and names a member that is not built', async () => {
    const test = (await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).slice(0, 3);
    writeFileSync(path.join(dir, 'ensemble-pairs.jsonl'), test.map((r) => JSON.stringify({ id: r.id, query: r.example.query, item: r.example.item })).join('\n'));
    const score = (out: string, ...extra: string[]) => cli('score', 'pipeline.yaml', '--input', 'ensemble-pairs.jsonl', '--output', out, '--max-new-tokens', '12', ...extra);
    score('sft-alone.jsonl', '--model', 'sft', '--grade', 'median');
    score('post-alone.jsonl', '--model', 'post');
    score('both.jsonl', '--model', 'sft', '--ensemble', 'post');
    type Row = { id: string; grade: Grade | null; probabilities: Record<Grade, number> };
    const [sft, post, both] = await Promise.all(['sft-alone.jsonl', 'post-alone.jsonl', 'both.jsonl'].map((f) => readJsonl<Row>(path.join(dir, f))));
    both!.forEach((row, i) => {
      const raw = GRADES.map((g) => Math.sqrt(sft![i]!.probabilities[g] * post![i]!.probabilities[g]));
      const total = raw.reduce((a, b) => a + b, 0);
      const expected = Object.fromEntries(GRADES.map((g, k) => [g, raw[k]! / total])) as Record<Grade, number>;
      for (const g of GRADES) expect(row.probabilities[g]).toBeCloseTo(expected[g], 9);
      expect(row.grade).toBe(medianGrade(expected));
    });
    expect(() => score('bad.jsonl', '--model', 'sft', '--ensemble', 'post,nosuch')).toThrow(/--ensemble nosuch: no built checkpoint stage of that name/);
  });

  it('pipeline score --delivered serves the judge eval delivered: the grades of its delivered rows', async () => {
    const ensembleDir = artifact('ensemble');
    const ensembleMetrics = JSON.parse(readFileSync(path.join(ensembleDir, 'metrics.json'), 'utf8')) as EvalMetrics;
    const delivered = (await readJsonl<Prediction>(path.join(ensembleDir, 'predictions.jsonl'))).filter((p) => p.model === 'delivered').slice(0, 3);
    const test = new Map((await readJsonl<PromptRecord>(path.join(artifact('icl'), 'test.jsonl'))).map((r) => [r.id, r.example]));
    writeFileSync(path.join(dir, 'delivered-pairs.jsonl'), delivered.map((p) => JSON.stringify({ id: p.id, query: test.get(p.id)!.query, item: test.get(p.id)!.item })).join('\n'));
    const score = (...extra: string[]) => cli('score', 'pipeline.yaml', '--input', 'delivered-pairs.jsonl', '--output', 'delivered.jsonl', '--max-new-tokens', '12', ...extra);
    expect(() => score('--delivered')).toThrow(/--delivered: several eval stages \(.*\); name one: --delivered <stage>/);
    expect(() => score('--delivered', 'ensemble', '--model', 'sft')).toThrow(/leave out --model, --ensemble and --lexical-pool/);
    score('--delivered', 'ensemble');
    const served = await readJsonl<{ id: string; grade: Grade | null }>(path.join(dir, 'delivered.jsonl'));
    expect(ensembleMetrics.delivered?.definition).toBeDefined();
    expect(served.map((r) => [r.id, r.grade])).toEqual(delivered.map((p) => [p.id, p.predicted]));
  });

  it('predicts with the lexical baseline fitted on the prompts\' train and dev examples', async () => {
    const read = (split: string) => readJsonl<PromptRecord>(path.join(artifact('icl'), `${split}.jsonl`));
    const [train, dev, test] = [await read('train'), await read('dev'), await read('test')];
    const fitted = lexicalBaseline(
      train.map((r) => r.example),
      dev.map((r) => r.example),
    );
    const byId = new Map(test.map((r) => [r.id, r.example]));
    for (const p of of('baseline')) expect(p.predicted).toBe(fitted.predict(byId.get(p.id)!));
    expect(metrics.baseline?.thresholds).toEqual(fitted.thresholds);
  });

  it('evaluates the dev split with split: dev, tuning the baseline on train instead of on what it reports', async () => {
    const { testContext } = await import('../data/context.ts');
    const evalStage = (await import('../../stages/eval/index.ts')).default;
    const ctx = testContext(evalStage, { params: { split: 'dev' }, inputs: [{ stage: 'icl', kind: 'prompts', dir: artifact('icl') }, { stage: 'kg', kind: 'kg', dir: artifact('kg') }] });
    await evalStage.run(ctx as never);
    const devMetrics = JSON.parse(readFileSync(path.join(ctx.outDir, 'metrics.json'), 'utf8')) as EvalMetrics;
    const devPredictions = (await readJsonl<Prediction>(path.join(ctx.outDir, 'predictions.jsonl'))).filter((p) => p.model === 'baseline');

    const read = (split: string) => readJsonl<PromptRecord>(path.join(artifact('icl'), `${split}.jsonl`));
    const [train, dev] = [await read('train'), await read('dev')];
    const fitted = lexicalBaseline(
      train.map((r) => r.example),
      train.map((r) => r.example),
    );
    expect(devMetrics.split).toBe('dev');
    expect(devMetrics.examples).toBe(dev.length);
    expect(devPredictions.map((p) => p.id)).toEqual(dev.map((r) => r.id));
    expect(devPredictions.map((p) => p.predicted)).toEqual(dev.map((r) => fitted.predict(r.example)));
    expect(devMetrics.baseline?.thresholds).toEqual(fitted.thresholds);
    rmSync(path.dirname(ctx.outDir), { recursive: true, force: true });
  });

  it('with limit and stratify, evaluates a sample of the split that keeps each gold grade\'s share to within one pair', async () => {
    const { testContext } = await import('../data/context.ts');
    const evalStage = (await import('../../stages/eval/index.ts')).default;
    const dev = await readJsonl<PromptRecord>(path.join(artifact('icl'), 'dev.jsonl'));
    const limit = Math.floor(dev.length / 2);
    const ctx = testContext(evalStage, { params: { split: 'dev', limit, stratify: true }, inputs: [{ stage: 'icl', kind: 'prompts', dir: artifact('icl') }, { stage: 'kg', kind: 'kg', dir: artifact('kg') }] });
    await evalStage.run(ctx as never);
    const sampled = (await readJsonl<Prediction>(path.join(ctx.outDir, 'predictions.jsonl'))).filter((p) => p.model === 'baseline');
    expect(sampled).toHaveLength(limit);
    expect(new Set(sampled.map((p) => p.id)).size).toBe(limit);
    const devIds = new Set(dev.map((r) => r.id));
    for (const p of sampled) expect(devIds.has(p.id)).toBe(true);
    // Each grade holds its proportional share, limit x (its dev count) / (dev's size), rounded up or down.
    for (const g of GRADES) {
      const quota = (limit * dev.filter((r) => r.example.label === g).length) / dev.length;
      const held = sampled.filter((p) => p.gold === g).length;
      expect(held).toBeGreaterThanOrEqual(Math.floor(quota));
      expect(held).toBeLessThanOrEqual(Math.ceil(quota));
    }
    rmSync(path.dirname(ctx.outDir), { recursive: true, force: true });
  });

  it('writes a report fragment that `pipeline report` embeds', () => {
    const fragment = JSON.parse(readFileSync(path.join(artifact('eval'), 'report.json'), 'utf8'));
    expect(fragmentProblem(fragment)).toBeUndefined();
    expect(cli('report', 'pipeline.yaml', '--out', 'report.html')).toMatch(/9 stages, 9 built/);
    const html = readFileSync(path.join(dir, 'report.html'), 'utf8');
    expect(html).toContain('<h2>Evaluation (eval)</h2>');
    expect(html).toContain('<h3>Comparison on 6 test examples</h3>');
    expect(html).toMatch(/data-chart="Acc@4 by capability"><figcaption>[^<]*<\/figcaption><svg/);
    // The verdict opens the section: the delivered judge against both baselines, then the charts.
    const section = html.slice(html.indexOf('<h2>Evaluation (eval)</h2>'));
    const order = ['Verdict: the delivered judge against both baselines', 'Delivered judge and baselines: Acc@2', 'Predicted-grade shares', 'Confusion matrices', 'Comparison on 6 test examples'].map((t) => section.indexOf(t));
    expect(order.every((at) => at >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    for (const chart of ['Delivered judge and baselines', 'Predicted-grade shares', 'Confusion matrices']) expect(section).toMatch(new RegExp(`data-chart="${chart}[^"]*"><figcaption>[^<]*</figcaption><svg`));
    // post is answer-first: its threshold is stated under the table.
    expect(html).toMatch(/post: answer_first, cumulative threshold 0\.\d{4}/);
  });
});

describe('eval stage on bad input', () => {
  it('names the file, line and key of a bad prompt record, and publishes nothing', async () => {
    const { testContext } = await import('../data/context.ts');
    const evalStage = (await import('../../stages/eval/index.ts')).default;
    const prompts = mkdtempSync(path.join(os.tmpdir(), 'eval-bad-'));
    const good = { id: 'a', messages: [{ role: 'user', content: 'q' }], example: { query: 'q', item: { title: 't', category: [], attributes: {} }, label: 'L3', meta: { rules: [] } } };
    writeFileSync(path.join(prompts, 'train.jsonl'), `${JSON.stringify(good)}\n`);
    writeFileSync(path.join(prompts, 'dev.jsonl'), `${JSON.stringify(good)}\n`);
    writeFileSync(path.join(prompts, 'test.jsonl'), `${JSON.stringify(good)}\n${JSON.stringify({ ...good, example: { ...good.example, label: 'L5' } })}\n`);
    const ctx = testContext(evalStage, { inputs: [{ stage: 'icl', kind: 'prompts', dir: prompts }, { stage: 'kg', kind: 'kg', dir: prompts }] });
    await expect(evalStage.run(ctx as never)).rejects.toThrow(/test\.jsonl:2: example\.label: expected one of L1, L2, L3, L4, got "L5"/);
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(ctx.outDir)).toEqual([]);
    rmSync(prompts, { recursive: true, force: true });
  });
});
