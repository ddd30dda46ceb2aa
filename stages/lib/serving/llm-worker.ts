/**
 * The LLM tier's worker thread: loads the judge (through judge/model.ts) and answers judge and chat
 * requests in arrival order, one batch at a time; chats waiting together are generated as one batch
 * (chat-generation.ts). Decoding is synchronous tensor work that would block an event loop for the
 * whole batch; in a worker, the server's cache and distilled tiers keep answering meanwhile.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { admitChat, generateChats, joinsBatch, type ChatJob } from './chat-generation.ts';
import { openLlmJudge } from './llm-judge.ts';
import type { FromWorker, ToWorker, WorkerInit } from './llm-tier.ts';

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('llm-worker.ts runs as a worker thread');
const post = (message: FromWorker) => port.postMessage(message);
const silent = { info: () => {}, warn: () => {}, debug: () => {} };

type Work = { type: 'judge'; id: number; pairs: Extract<ToWorker, { type: 'judge' }>['pairs'] } | { type: 'chat'; job: ChatJob };

try {
  const judge = await openLlmJudge(init.sources, init.engine, silent, init.options);
  const contextLength = judge.policy.model.config.max_position_embeddings;
  post({ type: 'ready', engine: judge.engine, contextLength });
  const queue: Work[] = [];
  // Chats whose client went away: dropped from the queue, or ended at their next token.
  const cancelled = new Set<number>();
  let busy = false;

  const pump = async () => {
    if (busy) return;
    busy = true;
    try {
      for (let next = queue.shift(); next; next = queue.shift()) {
        if (next.type === 'judge') {
          await judgePairs(next.id, next.pairs);
          continue;
        }
        // Every queued chat that fits this batch joins it, in arrival order.
        const batch = [next.job];
        for (let i = 0; i < queue.length; ) {
          const work = queue[i] as Work;
          if (work.type === 'chat' && joinsBatch(batch, work.job, init.options.batchSize, contextLength)) {
            batch.push(work.job);
            queue.splice(i, 1);
          } else i++;
        }
        await chat(batch.filter((job) => !cancelled.has(job.id)));
        for (const job of batch) cancelled.delete(job.id);
      }
    } finally {
      busy = false;
    }
  };

  const judgePairs = async (id: number, pairs: Extract<Work, { type: 'judge' }>['pairs']) => {
    try {
      post({ type: 'judged', id, judgements: await judge.judge(pairs) });
    } catch (error) {
      post({ type: 'error', id, message: (error as Error).message });
    }
  };

  const chat = async (jobs: ChatJob[]) => {
    if (jobs.length === 0) return;
    post({ type: 'batch', chats: jobs.length });
    try {
      await generateChats(judge.policy, jobs, {
        delta: (id, index, text) => post({ type: 'delta', id, index, text }),
        done: (id, result) => post({ type: 'chatted', id, ...result }),
        cancelled: (id) => cancelled.has(id),
      });
    } catch (error) {
      for (const job of jobs) post({ type: 'error', id: job.id, message: (error as Error).message });
    }
  };

  port.on('message', (message: ToWorker) => {
    if (message.type === 'cancel') {
      const queued = queue.findIndex((w) => w.type === 'chat' && w.job.id === message.id);
      if (queued >= 0) queue.splice(queued, 1);
      else cancelled.add(message.id);
      return;
    }
    if (message.type === 'judge') queue.push({ type: 'judge', id: message.id, pairs: message.pairs });
    else {
      const { type: _type, id, ...request } = message;
      const admitted = admitChat(judge.policy, id, request);
      if ('refused' in admitted) return post({ type: 'error', id, message: admitted.refused, refused: { code: admitted.code, param: admitted.param } });
      post({ type: 'accepted', id, promptTokens: admitted.promptIds.length });
      queue.push({ type: 'chat', job: admitted });
    }
    void pump();
  });
} catch (error) {
  post({ type: 'fatal', message: (error as Error).message });
}
