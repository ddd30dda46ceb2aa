/**
 * The reward worker thread: imports the user's reward files and calls them, one message per batch.
 * Its host (reward-files.ts) owns the timeouts and cancellation: it terminates this thread, which
 * stops even a reward stuck in a synchronous loop, where the main thread's signal handlers could not.
 */
import { parentPort } from 'node:worker_threads';
import { describeLoadError, importUserModule } from '../../../pipeline/api.ts';
import type { RewardFromWorker, RewardToWorker } from './reward-files.ts';

const port = parentPort;
if (!port) throw new Error('reward-worker.ts runs only as a worker thread');
const send = (message: RewardFromWorker) => port.postMessage(message);
const functions = new Map<string, (batch: unknown[], params: unknown) => unknown>();

port.on('message', async (message: RewardToWorker) => {
  if (message.type === 'load') {
    try {
      const module = await importUserModule(message.file);
      if (typeof module.default !== 'function') {
        send({ type: 'failed', id: message.id, message: "the module's default export must be a function (batch, params) => values" });
        return;
      }
      functions.set(message.file, module.default as (batch: unknown[], params: unknown) => unknown);
      send({ type: 'loaded', id: message.id });
    } catch (error) {
      send({ type: 'failed', id: message.id, message: `cannot load ${message.file}: ${describeLoadError(error)}` });
    }
    return;
  }
  const fn = functions.get(message.file);
  try {
    if (!fn) throw new Error(`Internal error: ${message.file} was not loaded in the reward worker`);
    send({ type: 'values', id: message.id, values: await fn(message.batch, message.params) });
  } catch (error) {
    send({ type: 'failed', id: message.id, message: error instanceof Error ? error.message : String(error) });
  }
});
