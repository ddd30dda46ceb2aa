/**
 * The catalog a retrieval stage searches and the judgements it is scored against, from a dataset
 * artifact: the world's catalog.jsonl when it has one, else every distinct item of the splits (an
 * imported dataset's catalog is the items someone judged). An item's key is its id, else its
 * title, as elsewhere in the project (stages/lib/relevance/catalog-kg.ts).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { readJsonl } from '../io/jsonl.ts';
import { normalise } from '../relevance/text.ts';
import { GRADES, type Grade, type Item, type RelevanceExample } from '../relevance/types.ts';

export function itemKey(item: Pick<Item, 'id' | 'title'>): string {
  return item.id ?? item.title;
}

/** The text BM25 and the embedder read for an item: its title, then its description's start. */
export function itemText(item: Pick<Item, 'title' | 'description'>, descriptionChars: number): string {
  const description = item.description?.slice(0, descriptionChars).trim();
  return description ? `${item.title}. ${description}` : item.title;
}

export interface CatalogEntry {
  key: string;
  item: Item;
}

/** The dataset's catalog, in a stable order (first appearance, train then dev then test). */
export async function readCatalog(datasetDir: string, splits: Record<string, readonly RelevanceExample[]>): Promise<CatalogEntry[]> {
  const file = path.join(datasetDir, 'catalog.jsonl');
  const items = existsSync(file) ? await readJsonl<Item>(file) : Object.values(splits).flatMap((examples) => examples.map((e) => e.item));
  const byKey = new Map<string, Item>();
  for (const item of items) if (!byKey.has(itemKey(item))) byKey.set(itemKey(item), item);
  return [...byKey].map(([key, item]) => ({ key, item }));
}

export interface JudgedQuery {
  /** The normalised query text: the unit a query split and the query log use. */
  queryId: string;
  query: string;
  /** Item key -> grade. */
  grades: Map<string, Grade>;
  /** How many judgements were merged into the grades (several raters may grade one pair). */
  judgements: number;
}

/**
 * Each query's judged items. Where raters disagree on one pair (Chorus keeps every rating), the
 * pair's grade is the lower median of its ratings: the middle opinion, rounded towards "not
 * relevant" on a tie so one generous rater does not make an item relevant.
 */
export function judgedQueries(examples: readonly RelevanceExample[]): JudgedQuery[] {
  const byQuery = new Map<string, { query: string; ratings: Map<string, Grade[]>; judgements: number }>();
  for (const e of examples) {
    const queryId = normalise(e.query);
    const entry = byQuery.get(queryId) ?? { query: e.query, ratings: new Map<string, Grade[]>(), judgements: 0 };
    byQuery.set(queryId, entry);
    const key = itemKey(e.item);
    entry.ratings.set(key, [...(entry.ratings.get(key) ?? []), e.label]);
    entry.judgements++;
  }
  return [...byQuery].map(([queryId, { query, ratings, judgements }]) => ({
    queryId,
    query,
    judgements,
    grades: new Map([...ratings].map(([key, grades]) => [key, lowerMedian(grades)])),
  }));
}

function lowerMedian(grades: readonly Grade[]): Grade {
  const sorted = [...grades].sort((a, b) => GRADES.indexOf(a) - GRADES.indexOf(b));
  return sorted[Math.floor((sorted.length - 1) / 2)] as Grade;
}
