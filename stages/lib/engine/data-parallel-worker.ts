/**
 * A data-parallel rank (see data-parallel.ts): starts the backend, builds a replica of the model,
 * then per step message copies the current parameters in from the shared buffer and answers with
 * the summed-loss gradients of its shards, concatenated into one transferred Float32Array.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from './backend.ts';
import type { FromWorker, ToWorker, WorkerInit } from './data-parallel.ts';
import { shardGradients } from './data-parallel.ts';
import { modelFromWeights, parameterShapes } from './model.ts';

const port = parentPort;
if (!port) throw new Error('data-parallel-worker.ts runs only as a worker thread');
const init = workerData as WorkerInit;
const send = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

try {
  const engine = await initEngine(init.engine);
  // Zeros: every step overwrites them with the main thread's parameters.
  const model = modelFromWeights(init.config, new Map(parameterShapes(init.config).map(([name, shape]) => [name, tf.zeros(shape)])));
  const variables = init.names.map((name) => {
    const v = model.params.get(name);
    if (!v) throw new Error(`Internal error: the replica has no parameter ${name}`);
    return v;
  });
  const total = variables.reduce((n, v) => n + v.size, 0);
  const shared = new Float32Array(init.params);
  if (shared.length !== total) throw new Error(`Internal error: ${shared.length} shared parameter values for ${total} parameters`);

  port.on('message', async (message: ToWorker) => {
    try {
      let offset = 0;
      for (const v of variables) {
        // A copy: the shared buffer is rewritten before the next step.
        tf.tidy(() => v.assign(tf.tensor(shared.slice(offset, offset + v.size), v.shape, 'float32')));
        offset += v.size;
      }
      const { sums, lossSum, weight } = await shardGradients(model, message.shards, variables);
      let grads: Float32Array | null = null;
      if (sums) {
        grads = new Float32Array(total);
        offset = 0;
        for (const s of sums) {
          grads.set((await s.data()) as Float32Array, offset);
          offset += s.size;
        }
        tf.dispose(sums);
      }
      send({ type: 'result', id: message.id, grads, lossSum, weight }, grads ? [grads.buffer as ArrayBuffer] : []);
    } catch (error) {
      send({ type: 'error', id: message.id, message: messageOf(error) });
    }
  });
  send({ type: 'ready', engine });
} catch (error) {
  send({ type: 'error', id: null, message: messageOf(error) });
}
