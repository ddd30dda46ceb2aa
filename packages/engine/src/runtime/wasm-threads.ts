/**
 * tfjs-wasm's threaded SIMD binary on Node's worker_threads. tfjs 4.22 turns wasm threads off under
 * Node (tfjs issue #3830): its pthread worker script and main script are handed to Emscripten as
 * Blob URLs, which a Node worker cannot load. Here the worker script (the string the package ships
 * in wasm-out/*.worker.js) is written to a file whose loader imports the main script straight from
 * the package, `URL.createObjectURL` answers with that file while the backend starts, and the
 * flag is set. XNNPACK then splits matmuls (and the other ops it owns) across the threads.
 *
 * Emscripten's C++ side caps the pool at min(requested, 8, logical cores / 2) (package README): to get
 * `threads` threads, the core count it reads (os.cpus()) is raised to 2 * threads while it starts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os, { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';

/** What the shipped worker does with a Blob main script; replaced by loading the file. */
const BLOB_IMPORT = 'if(typeof e.data.urlOrBlob=="string"){importScripts(e.data.urlOrBlob)}else{var objectUrl=URL.createObjectURL(e.data.urlOrBlob);importScripts(objectUrl);URL.revokeObjectURL(objectUrl)}';

/**
 * Runs `start` (which calls tf.setBackend('wasm')) with the threaded binary and `threads` threads.
 * Everything patched is restored afterwards, whether or not it started.
 */
export async function withWasmThreads<T>(threads: number, start: () => Promise<T>): Promise<T> {
  const require = createRequire(import.meta.url);
  const wasm = (await import('@tensorflow/tfjs-backend-wasm')) as { setThreadsCount(n: number): void };
  const wasmOut = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out');
  const mainScript = join(wasmOut, 'tfjs-backend-wasm-threaded-simd.js');
  const shipped = (require(join(wasmOut, 'tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string }).wasmWorkerContents;
  if (!shipped.includes(BLOB_IMPORT)) throw new Error('engine.wasm_threads: this tfjs-backend-wasm version loads its pthread script differently; use wasm_threads: 1');
  // `.cjs` in a temporary folder: the script uses require(), and this project's package.json says "type": "module".
  // As tfjs does before making its Blob: the string's \n escapes became newlines inside string literals.
  const workerScript = join(mkdtempSync(join(tmpdir(), 'lore-wasm-threads-')), 'worker.cjs');
  writeFileSync(workerScript, shipped.replace(BLOB_IMPORT, `importScripts(${JSON.stringify(mainScript)});`).replace(/\n/g, '\\n'));

  const createObjectURL = URL.createObjectURL;
  const cpus = os.cpus;
  URL.createObjectURL = (blob: Blob) => (blob.type === 'application/javascript' ? workerScript : createObjectURL(blob));
  os.cpus = () => {
    const seen = cpus();
    while (seen.length < 2 * threads) seen.push(seen[0]!);
    return seen;
  };
  // Emscripten unrefs its workers; while they load, nothing else may be keeping Node alive.
  const keepAlive = setInterval(() => {}, 1000);
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasm.setThreadsCount(threads);
  try {
    return await start();
  } finally {
    clearInterval(keepAlive);
    URL.createObjectURL = createObjectURL;
    os.cpus = cpus;
  }
}
