/**
 * DeepBoW (Alibaba, "Deep Bag-of-Words Model: an efficient and interpretable relevance architecture
 * for Chinese e-commerce", 2024): query and item each become a sparse bag of word → weight pairs,
 * and relevance is the sum over the words they share, so every score is explained by the words
 * that produced it. The paper learns the weights with a transformer encoder; here each word has its
 * own learned weights (a lookup table), which keeps scoring at tens of thousands of pairs per second
 * on one core and the model a readable JSON file.
 *
 * Score of query q and item d (bags Q and D, stemmed words; Q is expanded with the canonical names
 * of the knowledge graph's synonyms, colloquial names and needs it contains):
 *
 *   s(q, d) = Σ_{t ∈ Q ∩ D} wq(t) · wd(t)  −  Σ_{t ∈ Q \ D} mq(t)
 *
 * wq, wd ≥ 0 are the query and item weights of a word, mq ≥ 0 what a query word costs when the item
 * lacks it (a stated constraint unmet). A model may also carry signed weights f(x) of knowledge-graph
 * features of the pair (deepbow-kg.ts: how the item's product type relates to the query's, each
 * constraint met, conflicting or unknown), which a sum over shared words cannot see (an item that
 * names a different brand than the query's shares no word with it, but neither does one that names
 * none); they add Σ_x f(x) to s. Grades are ordinal, so s maps to grade probabilities by a
 * cumulative-link (ordinal logistic) model with cut points θ1 < θ2 < θ3 (McCullagh 1980):
 *
 *   P(grade ≤ Lk) = σ(θk − s),   P(Lk) = P(grade ≤ Lk) − P(grade ≤ Lk−1).
 *
 * Training distils the LLM judge's grade distribution p (soft labels; Hinton et al. 2015): loss
 * −Σ_g p(g) log P(g) plus λ·Σ (wq + wd + mq), an L1 sparsity penalty applied as a proximal step
 * after each Adagrad update (Duchi et al. 2011), which sets unhelpful weights to exactly 0. Words
 * seen fewer than `minCount` times in the training pool share one `<unk>` entry per side, so a new
 * query's unseen words still weigh something.
 */
import { mostProbableGrade } from '../relevance/grade-pooling.ts';
import type { KnowledgeGraph } from '../relevance/kg.ts';
import { kgFeatures } from './deepbow-kg.ts';
import { normalise, STOP_WORDS, stem, tokenize } from '../relevance/text.ts';
import { GRADES, type Grade, type Item } from '../relevance/types.ts';

export const UNKNOWN = '<unk>';
export const DEEPBOW_FORMAT = 'deepbow/1';
/** The model's file in a 'distilled' artifact. */
export const DISTILLED_MODEL_FILE = 'model.json';

export interface DeepBowModel {
  format: typeof DEEPBOW_FORMAT;
  /** Query-side word weights wq (words absent here weigh wq(<unk>) if present, else 0). */
  query: Record<string, number>;
  /** Item-side word weights wd. */
  item: Record<string, number>;
  /** What a query word costs when the item lacks it, mq. */
  missing: Record<string, number>;
  /** Cut points θ1 < θ2 < θ3 between L1|L2, L2|L3, L3|L4. */
  cuts: [number, number, number];
  /** Normalised phrase → the canonical phrase it expands to (synonyms, colloquial names, needs). */
  synonyms: Record<string, string>;
  /** Signed weights f of the pair's knowledge-graph features (deepbow-kg.ts); scoring then needs the graph. */
  features?: Record<string, number>;
}

export interface BagTerm {
  term: string;
  /** The query phrase a synonym expansion came from. */
  from?: string;
}

const MAX_PHRASE_TOKENS = 4;

// Stemming (pluralize's rules) is most of a bag's cost and words repeat: remember them, up to a bound.
const stems = new Map<string, string>();
function stemmed(token: string): string {
  let s = stems.get(token);
  if (s === undefined) {
    if (stems.size >= 100_000) stems.clear();
    s = stem(token);
    stems.set(token, s);
  }
  return s;
}

function words(text: string): string[] {
  return tokenize(text)
    .filter((t) => !STOP_WORDS.has(t))
    .map(stemmed);
}

/** The query's words, then the words of the canonical phrases its synonyms expand to (each once). */
export function queryBag(query: string, synonyms: Readonly<Record<string, string>>): BagTerm[] {
  const bag = new Map<string, BagTerm>();
  for (const term of words(query)) bag.set(term, { term });
  const tokens = tokenize(query);
  for (let n = MAX_PHRASE_TOKENS; n >= 1; n--) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const phrase = tokens.slice(i, i + n).join(' ');
      const canonical = synonyms[phrase];
      if (canonical === undefined) continue;
      for (const term of words(canonical)) if (!bag.has(term)) bag.set(term, { term, from: phrase });
    }
  }
  return [...bag.values()];
}

/** The item's words: title, category path, attribute values and image caption (not the long description). */
export function itemBag(item: Item): Set<string> {
  return new Set(words([item.title, ...item.category, ...Object.values(item.attributes), item.image_caption ?? ''].join(' ')));
}

const weightOf = (table: Readonly<Record<string, number>>, term: string) => table[term] ?? table[UNKNOWN] ?? 0;

export interface Contribution {
  /** The word, or the knowledge-graph feature ("link=sibling", "brand=conflict"). */
  term: string;
  /** wq·wd for a matched word, −mq for a missing one, f for a feature. */
  value: number;
  kind: 'match' | 'missing' | 'feature';
  from?: string;
}

export function contributions(model: DeepBowModel, query: readonly BagTerm[], item: ReadonlySet<string>, features: readonly string[] = []): Contribution[] {
  const out: Contribution[] = [];
  for (const { term, from } of query) {
    const expanded = from !== undefined ? { from } : {};
    if (item.has(term)) out.push({ term, value: weightOf(model.query, term) * weightOf(model.item, term), kind: 'match', ...expanded });
    else out.push({ term, value: -weightOf(model.missing, term), kind: 'missing', ...expanded });
  }
  for (const term of features) out.push({ term, value: model.features?.[term] ?? 0, kind: 'feature' });
  return out;
}

export function scoreOf(model: DeepBowModel, query: readonly BagTerm[], item: ReadonlySet<string>, features: readonly string[] = []): number {
  let s = 0;
  for (const { term } of query) s += item.has(term) ? weightOf(model.query, term) * weightOf(model.item, term) : -weightOf(model.missing, term);
  for (const term of features) s += model.features?.[term] ?? 0;
  return s;
}

/** The pair features a model weighs: none for a words-only model. */
function featureSource(model: DeepBowModel, kg: KnowledgeGraph | undefined, query: string): (item: Item) => string[] {
  if (model.features === undefined) return () => [];
  if (kg === undefined) throw new Error('this DeepBoW model weighs knowledge-graph features: scoring it needs the knowledge graph');
  return kgFeatures(kg, query);
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Cumulative probabilities c0..c4 = 0, σ(θ1−s), σ(θ2−s), σ(θ3−s), 1. */
function cumulative(cuts: readonly number[], s: number): number[] {
  return [0, ...cuts.map((theta) => sigmoid(theta - s)), 1];
}

export function gradeProbabilities(cuts: readonly number[], s: number): Record<Grade, number> {
  const c = cumulative(cuts, s);
  return Object.fromEntries(GRADES.map((g, k) => [g, (c[k + 1] as number) - (c[k] as number)])) as Record<Grade, number>;
}

export interface DeepBowJudgement {
  grade: Grade;
  probabilities: Record<Grade, number>;
  /** Probability of the predicted grade: what routing compares with its threshold. */
  confidence: number;
  score: number;
  /** The words behind the score, largest effect first. */
  reasons: Contribution[];
}

/** Scores one query against its items; the query's bag is built once. A model with feature weights needs the graph. */
export function judgeItems(model: DeepBowModel, query: string, items: readonly Item[], kg?: KnowledgeGraph): DeepBowJudgement[] {
  const bag = queryBag(query, model.synonyms);
  const featuresOf = featureSource(model, kg, query);
  return items.map((item) => {
    const reasons = contributions(model, bag, itemBag(item), featuresOf(item));
    const score = reasons.reduce((a, r) => a + r.value, 0);
    const probabilities = gradeProbabilities(model.cuts, score);
    const grade = mostProbableGrade(probabilities);
    return { grade, probabilities, confidence: probabilities[grade], score, reasons: reasons.filter((r) => r.value !== 0).sort((a, b) => Math.abs(b.value) - Math.abs(a.value)) };
  });
}

/** A problem with a parsed model file (the key and what is wrong), or undefined. */
export function deepBowProblem(raw: unknown): string | undefined {
  const m = raw as Partial<DeepBowModel> | null;
  if (m === null || typeof m !== 'object') return 'expected a JSON object';
  if (m.format !== DEEPBOW_FORMAT) return `format: expected "${DEEPBOW_FORMAT}", got ${JSON.stringify(m.format)}`;
  for (const key of ['query', 'item', 'missing'] as const) {
    const table = m[key];
    if (table === null || typeof table !== 'object') return `${key}: expected an object of word weights`;
    for (const [term, w] of Object.entries(table)) if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) return `${key}.${term}: expected a number >= 0, got ${JSON.stringify(w)}`;
  }
  const cuts = m.cuts;
  if (!Array.isArray(cuts) || cuts.length !== 3 || cuts.some((c) => typeof c !== 'number' || !Number.isFinite(c)) || !(cuts[0] < cuts[1] && cuts[1] < cuts[2])) {
    return `cuts: expected three increasing numbers, got ${JSON.stringify(cuts)}`;
  }
  if (m.synonyms === null || typeof m.synonyms !== 'object') return 'synonyms: expected an object';
  if (m.features !== undefined) {
    if (m.features === null || typeof m.features !== 'object') return 'features: expected an object of feature weights';
    for (const [name, w] of Object.entries(m.features)) if (typeof w !== 'number' || !Number.isFinite(w)) return `features.${name}: expected a number, got ${JSON.stringify(w)}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Training

export interface DeepBowExample {
  query: string;
  item: Item;
  /** The teacher's grade distribution (one-hot for a hard label). */
  target: Record<Grade, number>;
}

export interface DeepBowTrainOptions {
  epochs: number;
  lr: number;
  /** λ of the L1 penalty. */
  l1: number;
  minCount: number;
  synonyms: Record<string, string>;
  /** When given, the model also learns signed weights of the pairs' knowledge-graph features (deepbow-kg.ts). */
  kg?: KnowledgeGraph;
  /** Shuffles example order each epoch. */
  shuffle: <T>(items: T[]) => T[];
  onEpoch?: (epoch: number, loss: number) => void;
}

/** Mean distillation loss −Σ p(g) log P(g) over the examples (no penalty). */
export function distillLoss(model: DeepBowModel, examples: readonly DeepBowExample[], kg?: KnowledgeGraph): number {
  let total = 0;
  const featuresOf = featuresByQuery(model, kg);
  for (const e of examples) {
    const probs = gradeProbabilities(model.cuts, scoreOf(model, queryBag(e.query, model.synonyms), itemBag(e.item), featuresOf(e.query)(e.item)));
    for (const g of GRADES) if (e.target[g] > 0) total -= e.target[g] * Math.log(Math.max(probs[g], 1e-12));
  }
  return total / Math.max(1, examples.length);
}

/**
 * ∂loss/∂s and ∂loss/∂θk for one example. With c as in `cumulative`, P(Lk) = c_k − c_{k−1},
 * ∂c_k/∂s = −c_k(1−c_k) and ∂c_k/∂θk = c_k(1−c_k), so
 *   ∂loss/∂s  = −Σ_k p_k/P_k · (∂c_k/∂s − ∂c_{k−1}/∂s)
 *   ∂loss/∂θk = −(p_k/P_k − p_{k+1}/P_{k+1}) · c_k(1−c_k)
 */
export function lossGradients(cuts: readonly number[], s: number, target: Record<Grade, number>): { ds: number; dcuts: number[] } {
  const c = cumulative(cuts, s);
  const slope = c.map((ck) => ck * (1 - ck)); // 0 at c0 = 0 and c4 = 1
  const ratio = GRADES.map((g, k) => target[g] / Math.max((c[k + 1] as number) - (c[k] as number), 1e-12));
  let ds = 0;
  GRADES.forEach((_, k) => {
    ds -= (ratio[k] as number) * (-(slope[k + 1] as number) + (slope[k] as number));
  });
  const dcuts = [1, 2, 3].map((k) => -((ratio[k - 1] as number) - (ratio[k] as number)) * (slope[k] as number));
  return { ds, dcuts };
}

/** featureSource, with each query parsed once over many examples. */
function featuresByQuery(model: DeepBowModel, kg: KnowledgeGraph | undefined): (query: string) => (item: Item) => string[] {
  const sources = new Map<string, (item: Item) => string[]>();
  return (query) => {
    let source = sources.get(query);
    if (!source) sources.set(query, (source = featureSource(model, kg, query)));
    return source;
  };
}

/** Words to learn weights for: those seen at least `minCount` times in the pool, per side. */
function vocabulary(bags: readonly { query: BagTerm[]; item: Set<string> }[], minCount: number): { query: Set<string>; item: Set<string> } {
  const qCount = new Map<string, number>();
  const dCount = new Map<string, number>();
  for (const { query, item } of bags) {
    for (const { term } of query) qCount.set(term, (qCount.get(term) ?? 0) + 1);
    for (const term of item) dCount.set(term, (dCount.get(term) ?? 0) + 1);
  }
  const keep = (counts: Map<string, number>) => new Set([...counts].filter(([, n]) => n >= minCount).map(([t]) => t));
  return { query: keep(qCount), item: keep(dCount) };
}

export function trainDeepBow(examples: readonly DeepBowExample[], options: DeepBowTrainOptions): DeepBowModel {
  // Every word starts as one unit of evidence: a match adds 1, a missing word costs 0.5; every feature as no evidence (0).
  const model: DeepBowModel = { format: DEEPBOW_FORMAT, query: {}, item: {}, missing: {}, cuts: [-0.5, 0.5, 1.5], synonyms: options.synonyms, ...(options.kg ? { features: {} } : {}) };
  const featuresOf = featuresByQuery(model, options.kg);
  const bags = examples.map((e) => ({ query: queryBag(e.query, options.synonyms), item: itemBag(e.item), features: featuresOf(e.query)(e.item), target: e.target }));
  const vocab = vocabulary(bags, options.minCount);
  const as = (known: Set<string>, term: string) => (known.has(term) ? term : UNKNOWN);
  for (const { features } of bags) for (const f of features) (model.features as Record<string, number>)[f] = 0;
  for (const t of [...vocab.query, UNKNOWN]) {
    model.query[t] = 1;
    model.missing[t] = 0.5;
  }
  for (const t of [...vocab.item, UNKNOWN]) model.item[t] = 1;
  // Adagrad accumulators, per parameter.
  const acc = { query: new Map<string, number>(), item: new Map<string, number>(), missing: new Map<string, number>(), features: new Map<string, number>(), cuts: [0, 0, 0] };
  const step = (table: Record<string, number>, accumulator: Map<string, number>, term: string, grad: number, signed = false) => {
    const g2 = (accumulator.get(term) ?? 0) + grad * grad;
    accumulator.set(term, g2);
    const rate = options.lr / Math.sqrt(g2 + 1e-8);
    // Gradient step, then the L1 proximal step: soft threshold towards 0 (word weights stay >= 0).
    const w = (table[term] as number) - rate * grad;
    table[term] = signed ? Math.sign(w) * Math.max(0, Math.abs(w) - rate * options.l1) : Math.max(0, w - rate * options.l1);
  };
  const mapped = bags.map((b) => ({
    query: b.query.map((t) => as(vocab.query, t.term)),
    matched: b.query.map((t) => b.item.has(t.term)),
    itemTerm: b.query.map((t) => as(vocab.item, t.term)),
    features: b.features,
    target: b.target,
  }));
  const featureWeights = model.features ?? {};
  for (let epoch = 0; epoch < options.epochs; epoch++) {
    let loss = 0;
    for (const e of options.shuffle([...mapped])) {
      let s = 0;
      e.query.forEach((q, i) => {
        s += e.matched[i] ? (model.query[q] as number) * (model.item[e.itemTerm[i] as string] as number) : -(model.missing[q] as number);
      });
      for (const f of e.features) s += featureWeights[f] as number;
      const probs = gradeProbabilities(model.cuts, s);
      for (const g of GRADES) if (e.target[g] > 0) loss -= e.target[g] * Math.log(Math.max(probs[g], 1e-12));
      const { ds, dcuts } = lossGradients(model.cuts, s, e.target);
      e.query.forEach((q, i) => {
        const d = e.itemTerm[i] as string;
        if (e.matched[i]) {
          const wq = model.query[q] as number;
          const wd = model.item[d] as number;
          step(model.query, acc.query, q, ds * wd);
          step(model.item, acc.item, d, ds * wq);
        } else step(model.missing, acc.missing, q, -ds);
      });
      for (const f of e.features) step(featureWeights, acc.features, f, ds, true);
      dcuts.forEach((g, k) => {
        acc.cuts[k] = (acc.cuts[k] as number) + g * g;
        model.cuts[k] = (model.cuts[k] as number) - (options.lr / Math.sqrt((acc.cuts[k] as number) + 1e-8)) * g;
      });
      // Keep the cut points ordered (a probability can never be negative).
      for (let k = 1; k < 3; k++) model.cuts[k] = Math.max(model.cuts[k] as number, (model.cuts[k - 1] as number) + 1e-3);
    }
    options.onEpoch?.(epoch + 1, loss / Math.max(1, mapped.length));
  }
  // Readable: each table lists its words by weight, heaviest first. Words the L1 penalty zeroed stay
  // (at 0): dropping them would send them to <unk>'s weight at scoring time.
  const byWeight = (table: Record<string, number>) => Object.fromEntries(Object.entries(table).sort(([a, x], [b, y]) => y - x || a.localeCompare(b)));
  for (const key of ['query', 'item', 'missing'] as const) model[key] = byWeight(model[key]);
  if (model.features) model.features = byWeight(model.features);
  return model;
}

/** The synonym expansions a model carries, from a knowledge graph's alias index and its needs. */
export function synonymTable(aliases: Iterable<{ alias: string; name: string; kind: string }>, needs: readonly { phrase: string; type: string }[]): Record<string, string> {
  const table: Record<string, string> = {};
  for (const { alias, name, kind } of aliases) {
    if (kind === 'need') continue;
    const canonical = normalise(name);
    if (alias !== canonical) table[alias] = canonical;
  }
  for (const need of needs) table[normalise(need.phrase)] = normalise(need.type);
  return Object.fromEntries(Object.entries(table).sort(([a], [b]) => a.localeCompare(b)));
}
