/**
 * POST /v1/embeddings in OpenAI's shape, over an embed stage's trained decoder
 * (stages/lib/retrieval/embedding.ts: mean-pooled, L2-normalised final hidden states).
 *
 * Request: {model, input: string | string[], encoding_format?: 'float' | 'base64'}; response:
 * {object: 'list', data: [{object: 'embedding', index, embedding}], model, usage}. `base64` is the
 * float32 little-endian bytes, base64-encoded: what the official `openai` client asks for by
 * default and decodes itself.
 *
 * Not yet registered by `pipeline serve` (a deployment does not name an embed stage yet): a server
 * registers it with `registerEmbeddingRoutes(app, embedder)`.
 */
import type { FastifyInstance } from 'fastify';
import { invalidRequest } from './api-errors.ts';

export interface Embedder {
  /** The model name clients send and the response echoes. */
  model: string;
  /** Most inputs one request may carry. */
  maxInputs: number;
  embed(texts: readonly string[]): Promise<{ vectors: Float32Array[]; tokens: number }>;
}

interface EmbeddingsBody {
  model?: unknown;
  input?: unknown;
  encoding_format?: unknown;
}

export function registerEmbeddingRoutes(app: FastifyInstance, embedder: Embedder): void {
  app.post<{ Body: EmbeddingsBody }>('/v1/embeddings', async (request) => {
    const body = request.body ?? {};
    if (body.model !== embedder.model) throw invalidRequest('model', `unknown model ${JSON.stringify(body.model)}: this server embeds with ${JSON.stringify(embedder.model)}`, 'model_not_found');
    const inputs = typeof body.input === 'string' ? [body.input] : body.input;
    if (!Array.isArray(inputs) || inputs.length === 0) throw invalidRequest('input', 'expected a string or a non-empty array of strings');
    if (inputs.length > embedder.maxInputs) throw invalidRequest('input', `${inputs.length} inputs; at most ${embedder.maxInputs} per request`);
    const bad = inputs.findIndex((text) => typeof text !== 'string' || text.trim() === '');
    if (bad >= 0) throw invalidRequest(`input[${bad}]`, 'expected a non-empty string (token-id inputs are not accepted)');
    const format = body.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64') throw invalidRequest('encoding_format', `expected "float" or "base64", got ${JSON.stringify(format)}`);
    const { vectors, tokens } = await embedder.embed(inputs as string[]);
    return {
      object: 'list',
      data: vectors.map((vector, index) => ({
        object: 'embedding',
        index,
        embedding: format === 'base64' ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64') : Array.from(vector),
      })),
      model: embedder.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });
}

/** An Embedder over a checkpoint folder (an embed stage's model/): its decoder and tokenizer. */
export async function checkpointEmbedder(dir: string, model: string, options: { maxTokens: number; maxInputs: number }): Promise<Embedder> {
  const { loadModel } = await import('#engine');
  const { loadTokenizer } = await import('#engine/tokenizer');
  const { embedIds, embeddingIds } = await import('../retrieval/embedding.ts');
  const decoder = loadModel(dir);
  const tokenizer = await loadTokenizer(dir);
  return {
    model,
    maxInputs: options.maxInputs,
    async embed(texts) {
      const rows = texts.map((t) => embeddingIds(tokenizer, t, options.maxTokens));
      const matrix = await embedIds(decoder, tokenizer.padTokenId, rows, { batchSize: 32, maxTokens: options.maxTokens });
      const vectors = rows.map((_, i) => matrix.data.slice(i * matrix.dimensions, (i + 1) * matrix.dimensions));
      return { vectors, tokens: rows.reduce((n, r) => n + r.length, 0) };
    },
  };
}
