/**
 * cot: progressive chain-of-thought synthesis with rejection sampling (LORE §3.2).
 *
 * Each round asks the teacher for a rationale of every example that no earlier round has
 * accepted, with the round's context (plain prompt, + knowledge-graph facts, + rule reminders).
 * A rationale is kept only when its format is clean, every step verifies against the reference
 * reasoning and its grade equals the gold; the rest go to the next round. Counts per round say
 * what was kept and why the rest was rejected, overall and by capability.
 *
 *   cot:
 *     uses: cot
 *     needs: [icl, kg]
 *     with:
 *       teacher: { type: rules }
 *       rounds: [{ name: plain, context: plain }, { name: kg, context: kg }, { name: rules, context: rules }]
 */
import { join } from 'node:path';
import { z } from 'zod';
import { defineStage, type EngineRecord, type Rng, type StageContext } from '../../pipeline/api.ts';
import { formatInstructions, parseCompletion, verifyCompletion, type ReasoningSteps, type Verification } from '../lib/relevance/completion.ts';
import { analyzePair, toReasoningSteps } from '../lib/relevance/analysis.ts';
import { unsupportedClaims } from '../lib/relevance/evidence.ts';
import { readPromptRecords } from '../lib/artifacts/prompts.ts';
import { sftSetFile, type SftRecord } from '../lib/artifacts/sft-set.ts';
import { writeJsonl } from '../lib/io/jsonl.ts';
import { loadKnowledgeGraph, type KnowledgeGraph } from '../lib/relevance/kg.ts';
import type { PromptRecord } from '../lib/relevance/prompts.ts';
import { seededSample } from '../lib/relevance/subsample.ts';
import type { ChatMessage } from './openai-teacher.ts';
import { emptyGradeCounts, gradeSkew } from './grade-balance.ts';
import { rulesTeacher, type RoundContext } from './rules-teacher.ts';
import { dominantRejection, type Rejection } from './rejections.ts';

const rulesTeacherSchema = z.strictObject({
  type: z.literal('rules'),
  noise: z.number().min(0).max(1).default(0).describe('Probability that a rationale\'s grade is shifted by one (ablations)'),
});

const openaiTeacherSchema = z.strictObject({
  type: z.literal('openai'),
  base_url: z.string().url().describe('OpenAI-compatible API root, e.g. http://localhost:8000/v1'),
  model: z.string().min(1).describe('Model name sent with each request'),
  api_key_env: z.string().default('OPENAI_API_KEY').describe('Environment variable holding the API key (never written anywhere)'),
  temperature: z.number().min(0).max(2).default(0.2).describe('Sampling temperature'),
  max_tokens: z.number().int().positive().default(512).describe('Completion token limit per request'),
  concurrency: z.number().int().positive().default(4).describe('Requests in flight at once'),
  requests_per_minute: z.number().int().positive().default(60).describe('Rate limit'),
  max_retries: z.number().int().min(0).default(4).describe('Retries on 429, 5xx, timeouts and malformed responses'),
  backoff_s: z.number().positive().default(1).describe('First retry delay; doubles per attempt (Retry-After wins)'),
  timeout_s: z.number().positive().default(120).describe('Per-request timeout'),
});

const checkpointTeacherSchema = z.strictObject({
  type: z.literal('checkpoint'),
  temperature: z.number().min(0).default(0.7).describe('Sampling temperature of the checkpoint teacher'),
  top_p: z.number().gt(0).max(1).default(1).describe('Nucleus sampling mass'),
  max_new_tokens: z.number().int().positive().default(160).describe('Token limit of a rationale'),
  batch_size: z.number().int().positive().default(16).describe('Prompts generated together'),
});

const roundSchema = z.strictObject({
  name: z.string().min(1).describe('Round name, used in counts'),
  context: z
    .enum(['plain', 'kg', 'rules', 'gold'])
    .describe('What the teacher sees: the prompt without KG facts, with them, with them and a reminder of the rules that apply, or (gold: rationalisation) with them and the gold grade to explain from the evidence'),
});

const params = z.strictObject({
  teacher: z
    .discriminatedUnion('type', [rulesTeacherSchema, openaiTeacherSchema, checkpointTeacherSchema])
    .default({ type: 'rules', noise: 0 })
    .describe('Who writes the rationales: rules (built in, offline), openai (any compatible endpoint), checkpoint (a model from `needs`)'),
  rounds: z
    .array(roundSchema)
    .min(1)
    .default([{ name: 'rules', context: 'rules' }])
    .describe('Progressive rounds; each retries only the examples no earlier round got accepted'),
  splits: z.array(z.enum(['train', 'dev'])).min(1).default(['train', 'dev']).describe('Prompt splits to synthesise (dev feeds SFT eval loss)'),
  answer_first: z.boolean().default(false).describe('Put <answer> before <think> (TaoSR1 post-CoT)'),
  limit: z.number().int().min(0).default(0).describe('At most this many examples per split, a seeded random sample across queries (0 = all)'),
  allow_grade_skew: z
    .boolean()
    .default(false)
    .describe('Accept a kept set in which a grade (5 %+ of the split) keeps less than half the overall kept share; otherwise that is an error (a model trained on it rarely answers that grade)'),
});

type Params = z.output<typeof params>;



type RejectReason = 'teacher_error' | 'format' | 'label' | 'unsupported' | `step:${keyof Verification['steps']}`;

function rejectReason(verification: Verification): RejectReason | undefined {
  if (!verification.formatOk) return 'format';
  const failed = (Object.keys(verification.steps) as (keyof Verification['steps'])[]).find((step) => !verification.steps[step]);
  if (failed) return `step:${failed}`;
  if (!verification.labelCorrect) return 'label';
  return undefined;
}

/** The prompt as the round's context has it: facts removed for `plain`, a rule reminder added for `rules`. */
function contextMessages(record: PromptRecord, context: RoundContext, kg: KnowledgeGraph): ChatMessage[] {
  return record.messages.map((message) => {
    if (message.role !== 'user') return message;
    let content = message.content;
    if (context === 'plain') for (const fact of record.facts) content = content.split(`${fact}\n`).join('').split(fact).join('');
    if (context === 'gold') {
      content = `${content}\nThe correct grade is ${record.example.label}. Explain it from the evidence above, claiming nothing it does not state, and answer ${record.example.label}.`;
    }
    if (context === 'rules' && record.example.meta.rules.length > 0) {
      const sentences = record.example.meta.rules.map((id) => {
        const rule = kg.knowledge.rules.find((r) => r.id === id);
        return `- ${id}: ${rule?.sentence ?? 'see the guideline'}`;
      });
      content = `${content}\nRules that apply here:\n${sentences.join('\n')}`;
    }
    return { ...message, content };
  });
}

type Teacher = (records: PromptRecord[], context: RoundContext, rng: Rng) => Promise<Map<string, string | { error: string }>>;

async function makeTeacher(ctx: StageContext<Params>, kg: KnowledgeGraph): Promise<{ teacher: Teacher; engine?: EngineRecord }> {
  const config = ctx.params.teacher;
  const renderOptions = { answerFirst: ctx.params.answer_first };
  if (config.type === 'rules') {
    const rules = rulesTeacher(kg, { ...renderOptions, noise: config.noise });
    return {
      teacher: async (records, context, rng) => new Map(records.map((r) => [r.id, rules.write(r.example, context, rng)])),
    };
  }
  const withInstructions = (messages: ChatMessage[]): ChatMessage[] => {
    const instructions = formatInstructions(renderOptions);
    const system = messages.find((m) => m.role === 'system');
    return system
      ? messages.map((m) => (m === system ? { ...m, content: `${m.content}\n\n${instructions}` } : m))
      : [{ role: 'system', content: instructions }, ...messages];
  };
  if (config.type === 'openai') {
    const { OpenAiTeacher } = await import('./openai-teacher.ts');
    const client = new OpenAiTeacher(
      {
        baseUrl: config.base_url,
        model: config.model,
        apiKeyEnv: config.api_key_env,
        temperature: config.temperature,
        maxTokens: config.max_tokens,
        concurrency: config.concurrency,
        requestsPerMinute: config.requests_per_minute,
        maxRetries: config.max_retries,
        backoffS: config.backoff_s,
        timeoutS: config.timeout_s,
      },
      // The answer cache lives in the work folder's parent so that a rerun with other rounds or
      // splits (another fingerprint) still finds the answers it already paid for.
      join(ctx.workDir, '..', 'teacher-cache'),
      ctx.log,
    );
    return {
      teacher: async (records, context) => {
        let done = 0;
        const answers = await client.completeAll(
          records.map((r) => ({ id: r.id, messages: withInstructions(contextMessages(r, context, kg)) })),
          () => ctx.progress.update(++done, records.length, 'requests'),
          ctx.signal,
        );
        return new Map(answers.map((a) => [a.id, 'text' in a ? a.text : { error: a.error }]));
      },
    };
  }
  const { loadPolicy, generateCompletions } = await import('../lib/judge/model.ts');
  const { policy, engine } = await loadPolicy(ctx.inputs.one('checkpoint').dir, ctx.engine, ctx.log);
  return {
    engine,
    teacher: async (records, context, rng) => {
      const completions = await generateCompletions(
        policy,
        records.map((r) => ({ id: r.id, messages: contextMessages(r, context, kg) })),
        {
          n: 1,
          batchSize: config.batch_size,
          maxNewTokens: config.max_new_tokens,
          temperature: config.temperature,
          topK: 0,
          topP: config.top_p,
          rng,
          signal: ctx.signal,
          onBatch: (done, total) => ctx.progress.update(done, total, 'prompts'),
        },
      );
      return new Map(completions.map((c) => [c.id, c.text]));
    },
  };
}

interface RoundCounts {
  round: string;
  split: string;
  context: RoundContext;
  asked: number;
  kept: number;
  rejected: Record<string, number>;
  keptByCapability: Record<string, number>;
  rejectedByCapability: Record<string, number>;
}

export default defineStage({
  name: 'cot',
  version: '2',
  description: 'Progressive chain-of-thought synthesis with rejection sampling (rules, OpenAI-compatible or checkpoint teacher)',
  params,
  produces: 'sft-set',
  resources: 'light',
  requires: (p) => ['prompts', 'kg', ...(p.teacher.type === 'checkpoint' ? (['checkpoint'] as const) : [])],
  async run(ctx) {
    const { params: p } = ctx;
    const kg = await loadKnowledgeGraph(ctx.inputs.one('kg').dir);
    const { teacher, engine } = await makeTeacher(ctx, kg);
    const promptsDir = ctx.inputs.one('prompts').dir;
    const counts: RoundCounts[] = [];
    const totals: Record<string, number> = {};

    for (const split of p.splits) {
      const records = seededSample(await readPromptRecords(promptsDir, split), p.limit, ctx.rng.fork(`${split}/limit`));
      const references = new Map<string, ReasoningSteps>(
        records.map((r) => [r.id, toReasoningSteps(analyzePair(r.example.query, r.example.item, kg))]),
      );
      const kept: SftRecord[] = [];
      const rejectedLog: Rejection[] = [];
      let pending = records;
      for (const round of p.rounds) {
        if (pending.length === 0) break;
        ctx.signal.throwIfAborted();
        ctx.log.info(`${split}: round ${round.name} (${round.context}) on ${pending.length} examples`);
        const answers = await teacher(pending, round.context, ctx.rng.fork(`${split}/${round.name}`));
        const tally: RoundCounts = {
          round: round.name,
          split,
          context: round.context,
          asked: pending.length,
          kept: 0,
          rejected: {},
          keptByCapability: {},
          rejectedByCapability: {},
        };
        const stillPending: PromptRecord[] = [];
        for (const record of pending) {
          const answer = answers.get(record.id);
          let reason: RejectReason | undefined;
          if (answer === undefined || typeof answer !== 'string') reason = 'teacher_error';
          else {
            const parsed = parseCompletion(answer);
            reason = rejectReason(verifyCompletion(parsed, references.get(record.id) as ReasoningSteps, record.example.label));
            // Checked against the evidence the prompt states, too: no claim it does not support.
            if (reason === undefined && record.evidence && unsupportedClaims(parsed.steps, record.evidence).length > 0) reason = 'unsupported';
          }
          const capabilities = record.example.meta.capabilities.length > 0 ? record.example.meta.capabilities : ['none'];
          if (reason === undefined && typeof answer === 'string') {
            kept.push({ id: record.id, messages: record.messages, completion: answer, example: record.example, round: round.name });
            tally.kept++;
            for (const c of capabilities) tally.keptByCapability[c] = (tally.keptByCapability[c] ?? 0) + 1;
          } else {
            const why = reason ?? 'teacher_error';
            tally.rejected[why] = (tally.rejected[why] ?? 0) + 1;
            for (const c of capabilities) tally.rejectedByCapability[c] = (tally.rejectedByCapability[c] ?? 0) + 1;
            rejectedLog.push({
              id: record.id,
              round: round.name,
              reason: why,
              ...(typeof answer === 'string' ? { completion: answer } : { error: answer?.error ?? 'no answer' }),
            });
            stillPending.push(record);
          }
        }
        ctx.log.info(
          `${split}: round ${round.name}: kept ${tally.kept} of ${tally.asked}; rejected ${JSON.stringify(tally.rejected)}`,
        );
        counts.push(tally);
        pending = stillPending;
      }
      await writeJsonl(sftSetFile(ctx.outDir, split), kept);
      await writeJsonl(join(ctx.outDir, `rejected-${split}.jsonl`), rejectedLog);
      totals[`${split}.examples`] = records.length;
      totals[`${split}.kept`] = kept.length;
      totals[`${split}.unresolved`] = pending.length;
      const balance = { asked: emptyGradeCounts(), kept: emptyGradeCounts() };
      for (const record of records) balance.asked[record.example.label]++;
      for (const record of kept) balance.kept[record.example.label]++;
      for (const [grade, count] of Object.entries(balance.kept)) totals[`${split}.kept.${grade}`] = count;
      const skew = gradeSkew(balance);
      if (skew && (p.allow_grade_skew || split !== 'train')) ctx.log.warn(`${split}: ${skew} (rejected-${split}.jsonl says why each example was rejected)`);
      else if (skew) throw new Error(`train: ${skew}. Add a rationalisation round ({ name: gold, context: gold }) or set allow_grade_skew: true; rejected-train.jsonl says why each example was rejected`);
      if (split === 'train' && kept.length === 0) {
        // The output folder is not published on failure: the full path is the only way to find the file.
        throw new Error(
          `no rationale of the ${records.length} train examples verified in any round; ${dominantRejection(rejectedLog)}; each example's reason is in ${join(ctx.outDir, 'rejected-train.jsonl')}`,
        );
      }
    }
    await writeJsonl(join(ctx.outDir, 'rounds.jsonl'), counts);
    const { writeCompletionFormat } = await import('../lib/artifacts/checkpoint.ts');
    await writeCompletionFormat(ctx.outDir, { answerFirst: p.answer_first, dropSystemPrompt: false });
    return { metrics: { ...totals, rounds: counts.length }, ...(engine ? { engine } : {}) };
  },
});
