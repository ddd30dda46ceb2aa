/**
 * The LLM tier's worker thread: loads the judge (through policy.ts) and answers judge and chat
 * requests one at a time. Decoding is synchronous tensor work that would block an event loop for
 * the whole batch; in a worker, the server's cache and distilled tiers keep answering meanwhile.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Rng } from '../../../pipeline/rng.ts';
import { openLlmJudge } from './llm-judge.ts';
import type { ToWorker, WorkerInit } from './llm-tier.ts';

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('llm-worker.ts runs as a worker thread');
const silent = { info: () => {}, warn: () => {}, debug: () => {} };

try {
  const judge = await openLlmJudge(init.sources, init.engine, silent, init.options);
  port.postMessage({ type: 'ready', engine: judge.engine });
  // One request at a time, in arrival order: the model decodes one batch at once.
  let chain = Promise.resolve();
  port.on('message', (message: ToWorker) => {
    chain = chain.then(() => handle(message));
  });
  const handle = async (message: ToWorker) => {
    try {
      if (message.type === 'judge') {
        port.postMessage({ type: 'judged', id: message.id, judgements: await judge.judge(message.pairs) });
      } else {
        const { generateCompletions } = await import('../policy.ts');
        const [completion] = await generateCompletions(judge.policy, [{ id: String(message.id), messages: message.messages }], {
          n: 1,
          batchSize: 1,
          maxNewTokens: message.maxTokens,
          temperature: message.temperature,
          topK: 0,
          topP: 1,
          rng: new Rng(message.seed, 'chat'),
        });
        port.postMessage({ type: 'chatted', id: message.id, text: completion?.text ?? '', promptTokens: completion?.promptTokens.length ?? 0, completionTokens: completion?.tokens.length ?? 0, finishReason: completion?.finishReason ?? 'length' });
      }
    } catch (error) {
      port.postMessage({ type: 'error', id: message.id, message: (error as Error).message });
    }
  };
} catch (error) {
  port.postMessage({ type: 'fatal', message: (error as Error).message });
}
