/**
 * The 'retrieval' artifact (the retrieve stage writes it; eval-retrieval reads it):
 * `retrieval.json`, the manifest (split, k, methods, ANN recall, each hybrid's chosen dense weight),
 * and `runs.jsonl`, one RetrievalRun per query and method.
 */

/** The items one method retrieved for one query, best first. */
export interface RetrievalRun {
  method: string;
  queryId: string;
  query: string;
  retrieved: string[];
}

export interface RetrievalManifest {
  split: string;
  k: number;
  methods: string[];
  queries: number;
  annRecall: Record<string, number>;
  /** Per embed stage: the hybrid's dense weight, chosen on `tuneSplit`, and the NDCG@10 there of every candidate. */
  hybrid: Record<string, { denseWeight: number; tuneSplit: string; tuneNdcg10: Record<string, number> }>;
}

export const RETRIEVAL_FILE = 'retrieval.json';
export const RUNS_FILE = 'runs.jsonl';
