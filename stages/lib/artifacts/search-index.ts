/**
 * The 'index' artifact (the index stage writes it; retrieve reads it): `index.json`, the manifest
 * naming each embed stage's dense vectors file beside the catalog's size and the HNSW settings.
 */

export interface IndexManifest {
  items: number;
  dense: Record<string, { dimensions: number; file: string; buildSeconds: number }>;
  /** The index stage's `hnsw` params. */
  hnsw: { connectivity: number; expansion_add: number; expansion_search: number };
}

export const INDEX_FILE = 'index.json';
