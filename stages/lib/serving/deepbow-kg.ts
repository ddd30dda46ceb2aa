/**
 * DeepBoW's knowledge-graph features: what a sum over shared words cannot see. An item of a sibling
 * product type ("rain boots" for "hiking boots") shares a word with the query and an item of the
 * queried type in another brand shares every word but one, yet the judge grades them apart; the
 * graph says how the two product types relate and whether each stated constraint is met, conflicts
 * or is unknown. Each feature is a readable name that a DeepBoW model weighs with one signed number:
 *
 *   link=<how the item's product relates to the query's>   (same, subtype, sibling, accessory, …)
 *   <key>=<match|conflict|unknown>                          one per constraint the query states
 *   not <key>=<match|conflict|unknown>                      one per value the query excludes
 *
 * They come from the relevance analysis (analysis.ts), the same reading of query and item the judge's
 * reasoning steps are written in; the model learns their weights from the judge's labels, not the
 * analysis's rules.
 */
import { analyzeParsed, parseQuery } from '../relevance/analysis.ts';
import type { KnowledgeGraph } from '../relevance/kg.ts';
import type { Item } from '../relevance/types.ts';

/** The features of one query's pairs: the query is parsed once, each item on call. */
export function kgFeatures(kg: KnowledgeGraph, query: string): (item: Item) => string[] {
  const parse = parseQuery(query, kg);
  return (item) => {
    const analysis = analyzeParsed(parse, item, kg);
    const features = [`link=${analysis.category.link}`];
    for (const [key, verdict] of Object.entries(analysis.attributes)) features.push(`${key in parse.negations ? 'not ' : ''}${key}=${verdict}`);
    return features;
  };
}
