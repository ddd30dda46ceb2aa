/**
 * /v1/embeddings answered to the official `openai` client: the vectors it decodes (the client asks
 * for base64 by default) equal the embedder's own, float format too, and errors in OpenAI's shape.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../pipeline/rng.ts';
import { createModel, initEngine, presets, saveModel } from '#engine';
import { copyTokenizerFiles, loadTokenizer, trainBpeTokenizer } from '#engine/tokenizer';
import { ApiError } from '../../stages/lib/serving/api-errors.ts';
import { checkpointEmbedder, registerEmbeddingRoutes, type Embedder } from '../../stages/lib/serving/embedding-routes.ts';

let scratch: string;
let app: FastifyInstance;
let client: OpenAI;
let embedder: Embedder;

beforeAll(async () => {
  await initEngine({ backend: 'cpu' });
  scratch = mkdtempSync(join(tmpdir(), 'embeddings-api-'));
  const texts = ['usb c cable braided', 'hdmi cable 4k', 'wireless mouse', 'ventilation fan white', 'phone case silicone'];
  await trainBpeTokenizer(texts, { vocabSize: 300, extraTokens: ['<think>', '</think>'] }, join(scratch, 'tokenizer'));
  const tokenizer = await loadTokenizer(join(scratch, 'tokenizer'));
  const model = createModel(presets.tiny(tokenizer.vocabSize, { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64 }), new Rng(3));
  const dir = join(scratch, 'model');
  await saveModel(model, dir, tokenizer);
  await copyTokenizerFiles(tokenizer.dir, dir);
  embedder = await checkpointEmbedder(dir, 'lrem-test', { maxTokens: 32, maxInputs: 4 });
  app = Fastify();
  app.setErrorHandler((error, _request, reply) => (error instanceof ApiError ? reply.code(error.statusCode).send(error.body) : reply.code(500).send({ error: { message: String(error) } })));
  registerEmbeddingRoutes(app, embedder);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address() as { port: number };
  client = new OpenAI({ baseURL: `http://127.0.0.1:${address.port}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 120_000);

afterAll(async () => {
  await app?.close();
  rmSync(scratch, { recursive: true, force: true });
});

describe('/v1/embeddings through the openai client', () => {
  it('returns the embedder’s unit vectors, in order, decoded from base64 by the client', async () => {
    const inputs = ['usb c cable', 'wireless mouse'];
    const response = await client.embeddings.create({ model: 'lrem-test', input: inputs });
    const direct = await embedder.embed(inputs);
    expect(response.model).toBe('lrem-test');
    expect(response.data.map((d) => d.index)).toEqual([0, 1]);
    response.data.forEach((d, i) => {
      expect(d.embedding).toHaveLength(32);
      d.embedding.forEach((v, j) => expect(v).toBeCloseTo(direct.vectors[i]![j]!, 6));
      expect(Math.hypot(...d.embedding)).toBeCloseTo(1, 5);
    });
    expect(response.usage.prompt_tokens).toBe(direct.tokens);
    const float = await client.embeddings.create({ model: 'lrem-test', input: 'usb c cable', encoding_format: 'float' });
    float.data[0]!.embedding.forEach((v, j) => expect(v).toBeCloseTo(direct.vectors[0]![j]!, 6));
  });

  it('answers bad requests with OpenAI-shaped 400s naming the field', async () => {
    const error = (await client.embeddings.create({ model: 'other', input: 'x' }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error.status).toBe(400);
    expect(error.code).toBe('model_not_found');
    const empty = (await client.embeddings.create({ model: 'lrem-test', input: ['ok', ' '] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(empty.status).toBe(400);
    expect(empty.message).toContain('input[1]');
    const many = (await client.embeddings.create({ model: 'lrem-test', input: ['a', 'b', 'c', 'd', 'e'] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(many.status).toBe(400);
  });
});
