/**
 * The relevance task every stage speaks (docs/design.md §2). One record per query–item pair.
 */

/** L4 Excellent, L3 Related, L2 Mismatch, L1 Irrelevant. */
export type Grade = 'L1' | 'L2' | 'L3' | 'L4';
export const GRADES: readonly Grade[] = ['L1', 'L2', 'L3', 'L4'];

/** Binary relevance as the papers use it: L3–L4 relevant, L1–L2 not. */
export function isRelevant(grade: Grade): boolean {
  return grade === 'L3' || grade === 'L4';
}

/** After LORE's RAIR benchmark: the slices every evaluation reports. */
export type Capability = 'knowledge' | 'reasoning' | 'visual' | 'rule';
export type Difficulty = 'easy' | 'medium' | 'hard';
export type Split = 'train' | 'dev' | 'test';

export interface Item {
  id?: string;
  title: string;
  /** Category path, root first: ["Shoes", "Outdoor", "Hiking Boots"]. */
  category: string[];
  attributes: Record<string, string>;
  description?: string;
  image_caption?: string;
}

export interface ExampleMeta {
  capabilities: Capability[];
  difficulty: Difficulty;
  /** Ids of the business rules that fired for this pair (may be empty). */
  rules: string[];
  /** "world", or the import's name. */
  source: string;
  [key: string]: unknown;
}

export interface RelevanceExample {
  id: string;
  query: string;
  item: Item;
  label: Grade;
  meta: ExampleMeta;
}
