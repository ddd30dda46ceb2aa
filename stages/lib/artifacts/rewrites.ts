/**
 * The 'rewrites' artifact (the rewrite stage writes it; retrieve and the server read it):
 * `rewrites.jsonl`, one QueryRewrites per query.
 */

export interface QueryRewrites {
  queryId: string;
  query: string;
  rewrites: string[];
  /** Who wrote the rewrites: the trained rewriter, or the reasoning model's analysis (untrained). */
  source: 'rewriter' | 'analysis';
}

export const REWRITES_FILE = 'rewrites.jsonl';
