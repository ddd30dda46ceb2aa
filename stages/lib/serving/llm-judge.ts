/**
 * The trained judge as a labeller: for any query–item pair, render the prompt the judge was trained
 * on (the icl stage's knowledge-graph facts and train exemplars, with its params), decode greedily
 * through stages/lib/judge/model.ts, and read the grade probabilities from the answer tokens after the reasoning
 * (judge/grade-probs.ts), pooled with the learned lexical baseline's when `lexicalPool` says so (as eval's
 * `lexical_pool` scores it); with `ensembleDirs`, several checkpoints judge as one (eval's
 * `ensemble`). What `pipeline score`, the distill stage's teacher, the precompute stage and the
 * server's LLM tier all call.
 */
import { type EngineConfig, type EngineRecord, type Logger, Rng } from '../../../pipeline/api.ts';
import { parseCompletion } from '../relevance/completion.ts';
import type { Policy } from '../judge/model.ts';
import type { PromptBuilder, PromptParams } from '../relevance/prompts.ts';
import type { GradeReading } from '../relevance/grade-pooling.ts';
import type { LearnedBaseline } from '../relevance/learned-baseline.ts';
import type { Grade, Item, RelevanceExample } from '../relevance/types.ts';

export interface PairToJudge {
  id: string;
  query: string;
  item: Item;
}

export interface LlmJudgement {
  /** The answer's grade; null when the model gave none (or the prompt did not fit its context). */
  grade: Grade | null;
  /**
   * p(grade) from the answer tokens after the reasoning, renormalised over L1–L4; with lexicalPool,
   * those pooled with the learned lexical baseline's (what the grade was read from).
   */
  probabilities: Record<Grade, number> | null;
  /** The lines of the <think> block (of the first checkpoint, in an ensemble). */
  reasoning: string[];
  formatOk: boolean;
  /** Why there is no grade, when there is none. */
  error?: 'prompt_too_long' | 'no_answer';
}

/** Where the judge's parts live: artifact folders of the checkpoint, the kg, the dataset and the icl params. */
export interface JudgeSources {
  checkpointDir: string;
  /**
   * Further checkpoints judged with `checkpointDir` as one (eval's `ensemble`): each writes its own
   * reasoning, and the grade is the median of the equal-weight geometric mean of their grade
   * probabilities (ensembleGradeProbs), pooled with the lexical model's under `lexicalPool`.
   */
  ensembleDirs?: readonly string[];
  kgDir: string;
  datasetDir: string;
  promptParams: PromptParams;
}

export interface LlmJudgeOptions {
  maxNewTokens: number;
  /** Pairs decoded at once. */
  batchSize: number;
  /**
   * A think-first judge's grade: the answer it wrote ('answer', the default) or the median of its
   * answer probabilities after its reasoning ('median', as eval's `grade: median` reads it).
   */
  grade?: GradeReading;
  /**
   * Pool the grade probabilities with the learned lexical baseline's, fitted on the dataset's train
   * split, with this weight on the baseline (poolGradeProbs), and read the pooled median: eval's
   * `<checkpoint>+lexical` row under `lexical_pool`. Every pair whose probabilities can be read
   * gets a grade, whatever the grade reading.
   */
  lexicalPool?: number;
  /**
   * Read the grade at these ordinal cut points on the expected grade of the (pooled) probabilities
   * (cutPointGrade), instead of their median: eval's delivered judge under the `cut-points` rule.
   */
  cutPoints?: readonly number[];
}

export interface LlmJudge {
  policy: Policy;
  engine: EngineRecord;
  judge(pairs: readonly PairToJudge[], signal?: AbortSignal): Promise<LlmJudgement[]>;
  close(): void;
}

export async function openLlmJudge(sources: JudgeSources, engine: EngineConfig, log: Logger, options: LlmJudgeOptions): Promise<LlmJudge> {
  const { loadPolicy } = await import('../judge/model.ts');
  const { loadKnowledgeGraph } = await import('../relevance/kg.ts');
  const { readSplit } = await import('../artifacts/dataset.ts');
  const { PromptBuilder: Builder } = await import('../relevance/prompts.ts');
  const kg = await loadKnowledgeGraph(sources.kgDir);
  // Exemplars come from train, as in the prompts the judge was trained on.
  const train = await readSplit(sources.datasetDir, 'train');
  const builder = new Builder(kg, train, sources.promptParams);
  let lexical: LexicalPool | undefined;
  if (options.lexicalPool !== undefined) {
    const { fitLearnedBaseline } = await import('../relevance/learned-baseline.ts');
    lexical = { model: fitLearnedBaseline(train), weight: options.lexicalPool };
  }
  const { policy, engine: record } = await loadPolicy(sources.checkpointDir, engine, log);
  const members = [policy];
  for (const dir of sources.ensembleDirs ?? []) members.push((await loadPolicy(dir, engine, log)).policy);
  const ensemble = members.length > 1;
  // An ensemble reads the median of its pooled probabilities, as eval's ensemble row does.
  const threshold = policy.format.answerFirst && !lexical && !ensemble ? await tuneAnswerThreshold(policy, builder, await readSplit(sources.datasetDir, 'dev'), options, log) : undefined;
  return {
    policy,
    engine: record,
    judge: (pairs, signal) => judgeWith(members, builder, pairs, options, { lexical, threshold }, signal),
    close: () => {
      void import('../judge/model.ts').then(({ releasePolicy }) => members.forEach(releasePolicy));
    },
  };
}

function thinkLines(text: string): string[] {
  const m = /<think>([\s\S]*?)(<\/think>|$)/.exec(text);
  return (m?.[1] ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** The learned lexical baseline the judge's probabilities are pooled with, and its weight. */
interface LexicalPool {
  model: LearnedBaseline;
  weight: number;
}

/**
 * The cumulative threshold of an answer_first judge, tuned for macro-F1 on a seeded sample of the
 * dev pairs whose prompt fits, as eval reads such a checkpoint (so the served judge is the one
 * eval measured, up to eval's own sample). Undefined, with a warning, when dev has none: the most
 * probable grade is read instead.
 */
async function tuneAnswerThreshold(policy: Policy, builder: PromptBuilder, dev: readonly RelevanceExample[], options: LlmJudgeOptions, log: Logger): Promise<number | undefined> {
  const { fitsContext, promptIds } = await import('../judge/model.ts');
  const { tuneAnswerFirstThreshold } = await import('../judge/grade-probs.ts');
  const { THRESHOLD_TUNING_EXAMPLES } = await import('../relevance/grade-pooling.ts');
  const { seededSample } = await import('../relevance/subsample.ts');
  const prompts = dev.map((example) => ({ gold: example.label, promptIds: promptIds(policy.tokenizer, policy.format, builder.build(example).messages) }));
  const tuning = seededSample(
    prompts.filter((p) => fitsContext(policy, p.promptIds.length, options.maxNewTokens)),
    THRESHOLD_TUNING_EXAMPLES,
    new Rng(0, 'judge/threshold-tuning'),
  );
  if (tuning.length === 0) {
    log.warn('answer_first judge: no dev pair to tune its cumulative threshold on; reading the most probable grade');
    return undefined;
  }
  const tuned = await tuneAnswerFirstThreshold(policy, tuning, { batchSize: options.batchSize });
  log.info(`answer_first judge: cumulative threshold ${tuned.threshold.toFixed(4)} (macro-F1 ${tuned.macroF1.toFixed(4)} on ${tuning.length} dev pairs)`);
  return tuned.threshold;
}

/** How the grade is read beyond GradeReading: the lexical pool, or an answer_first judge's tuned threshold. */
interface Reading {
  lexical: LexicalPool | undefined;
  threshold: number | undefined;
}

/** One checkpoint's reading of the pairs: its completions (undefined where the prompt does not fit) and the grade probabilities after them. */
interface PolicyReading {
  completions: ({ text: string } | undefined)[];
  probabilities: (Record<Grade, number> | undefined)[];
}

/** The pairs' prompts, rendered once and read by every member of an ensemble. */
type PairPrompt = { id: string; messages: ReturnType<PromptBuilder['build']>['messages'] };

async function readWith(policy: Policy, prompts: readonly PairPrompt[], options: LlmJudgeOptions, signal?: AbortSignal): Promise<PolicyReading> {
  const { greedyCompletions, fitsContext, promptIds } = await import('../judge/model.ts');
  const { answerPrefix, gradeProbsAfter } = await import('../judge/grade-probs.ts');
  const ids = prompts.map((p) => promptIds(policy.tokenizer, policy.format, p.messages));
  const fits = ids.map((p) => fitsContext(policy, p.length, options.maxNewTokens));
  const readable = prompts.filter((_, i) => fits[i]);
  if (readable.length === 0) return { completions: prompts.map(() => undefined), probabilities: prompts.map(() => undefined) };
  const generated = await greedyCompletions(policy, readable, { batchSize: options.batchSize, maxNewTokens: options.maxNewTokens, rng: new Rng(0, 'judge'), signal });
  const byId = new Map(generated.map((c) => [c.id, c]));
  const completions = prompts.map((prompt, i) => (fits[i] ? byId.get(prompt.id) : undefined));
  const prefixes = completions.map((completion, i) => {
    if (!completion) return undefined;
    // answer_first: read after the prompt, as eval and the threshold's tuning read it.
    return policy.format.answerFirst ? ids[i] : answerPrefix(policy, ids[i] as number[], completion.text);
  });
  return { completions, probabilities: await gradeProbsAfter(policy, prefixes, { batchSize: options.batchSize, signal }) };
}

async function judgeWith(members: readonly Policy[], builder: PromptBuilder, pairs: readonly PairToJudge[], options: LlmJudgeOptions, { lexical, threshold }: Reading, signal?: AbortSignal): Promise<LlmJudgement[]> {
  const { cumulativeGrade, cutPointGrade, ensembleGradeProbs, mostProbableGrade, pooledReading, MEDIAN_THRESHOLD } = await import('../relevance/grade-pooling.ts');
  const policy = members[0] as Policy;
  const readings: PolicyReading[] = [];
  const prompts = pairs.map((pair) => ({ id: pair.id, messages: builder.build(pair).messages }));
  for (const member of members) readings.push(await readWith(member, prompts, options, signal));
  const [first] = readings as [PolicyReading];
  // Unpooled: an answer_first model's cumulative partition at its dev-tuned threshold (the most
  // probable grade without one), or a think-first one's written answer (with grade: median, the
  // median of the probabilities read after its reasoning); an ensemble's median.
  const gradeOf = (probs: Record<Grade, number> | null, written: Grade | null): Grade | null => {
    if (!probs) return written;
    if (members.length > 1) return cumulativeGrade(probs, MEDIAN_THRESHOLD);
    if (policy.format.answerFirst) return threshold !== undefined ? cumulativeGrade(probs, threshold) : mostProbableGrade(probs);
    return options.grade === 'median' ? cumulativeGrade(probs, MEDIAN_THRESHOLD) : written;
  };
  return pairs.map((pair, i): LlmJudgement => {
    const completion = first.completions[i];
    if (!completion) return { grade: null, probabilities: null, reasoning: [], formatOk: false, error: 'prompt_too_long' };
    const parsed = parseCompletion(completion.text);
    // An ensemble's members that could read the pair (eval's ensemble row does the same).
    const memberProbs = readings.flatMap((r) => (r.probabilities[i] ? [r.probabilities[i]] : []));
    const read = members.length > 1 ? (memberProbs.length > 0 ? ensembleGradeProbs(memberProbs) : null) : (first.probabilities[i] ?? null);
    // Pooled with the lexical model: the pooled median, eval's +lexical row.
    const pooled = read && lexical ? pooledReading(read, lexical.model.probabilities(pair), lexical.weight) : undefined;
    const probs = pooled?.probs ?? read;
    const grade = probs && options.cutPoints ? cutPointGrade(probs, options.cutPoints) : pooled ? pooled.grade : gradeOf(read, parsed.label ?? null);
    return { grade, probabilities: probs, reasoning: thinkLines(completion.text), formatOk: parsed.formatOk, ...(grade === null ? { error: 'no_answer' as const } : {}) };
  });
}

/**
 * The judge's sources for `ensemble` (checkpoint stage names among `inputs`, as eval's `ensemble:`
 * lists them, the first the primary), or the one checkpoint input without it.
 */
export function ensembleSourcesFrom(inputs: Parameters<typeof judgeSourcesFrom>[0] & { byStage(stage: string): { kind: string; dir: string } | undefined }, ensemble?: readonly string[]): JudgeSources {
  if (!ensemble || ensemble.length === 0) return judgeSourcesFrom(inputs);
  const dirs = ensemble.map((stage) => {
    const found = inputs.byStage(stage);
    if (!found || found.kind !== 'checkpoint') throw new Error(`ensemble: ${stage} is not a checkpoint among the stage's inputs (list it in needs)`);
    return found.dir;
  });
  return { ...judgeSourcesFrom(inputs, dirs[0]), ensembleDirs: dirs.slice(1) };
}

/** Where the parts of a judge are among a pipeline's artifacts: the icl stage's params say how prompts were rendered. */
export function judgeSourcesFrom(artifacts: { one(kind: 'checkpoint' | 'kg' | 'dataset' | 'prompts'): { dir: string; manifest: { params: unknown } } }, checkpointDir?: string): JudgeSources {
  return {
    checkpointDir: checkpointDir ?? artifacts.one('checkpoint').dir,
    kgDir: artifacts.one('kg').dir,
    datasetDir: artifacts.one('dataset').dir,
    promptParams: artifacts.one('prompts').manifest.params as PromptParams,
  };
}
