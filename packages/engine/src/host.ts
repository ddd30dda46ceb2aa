/**
 * What the engine asks of whoever calls it, and what it reports back. The engine imports nothing
 * from the pipeline or the relevance code: a caller hands it a random source, a logger and an
 * abort signal, so the engine folder can be lifted out and used on its own (the pipeline's `Rng`,
 * `Logger` and `engine:` block satisfy these shapes as they are).
 */

/**
 * A seeded random source. Weight init (`normal`), sampling (`next`) and batch order (`shuffle`)
 * draw from it, so a seed gives the same model, tokens and batches on every backend.
 */
export interface RandomSource {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Standard normal. */
  normal(): number;
  /** In place; returns the same array. */
  shuffle<T>(items: T[]): T[];
}

export interface EngineLogger {
  info(message: string): void;
  warn(message: string): void;
  debug(message: string): void;
}

/** Which tensor runtime to start, and how training uses the cores. */
export interface EngineOptions {
  backend: 'auto' | 'webgpu' | 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
  /** Training replicas that split each batch (wasm and cpu backends); see `resolveRanks`. */
  data_parallel?: 'auto' | number;
  /**
   * Threads of the wasm backend's own kernels (XNNPACK on worker_threads, the threaded SIMD binary);
   * 1 (default): the single-threaded binary. One process, one setting.
   */
  wasm_threads?: number;
  [key: string]: unknown;
}

/** What the engine reports about the runtime it started (backend, tfjs version, wasm features). */
export interface EngineRecord {
  backend: string;
  tfjs: string;
  [key: string]: string;
}
