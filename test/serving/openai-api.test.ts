/**
 * `pipeline serve` as a client of OpenAI's API sees it, through the official `openai` npm client:
 * token-by-token streaming with a usage chunk, errors in OpenAI's shape (the SDK's e.error.message,
 * e.code, e.type), 400 for whatever the client can fix (a context overflow names the limit), 405,
 * 415 and gzip bodies, text checks on /v1/relevance, n, stop, content parts, the developer role,
 * /v1/models/{id}, /v1/completions, an optional API key, several chats batched in the worker, and
 * cancelled chats that stop generating and free the worker.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJsonl } from '../../stages/lib/io/jsonl.ts';
import type { RelevanceExample } from '../../stages/lib/relevance/types.ts';
import type { RunningServer } from '../../stages/lib/serving/server.ts';
import { buildDeployment, type BuiltDeployment } from './deployment-fixture.ts';

let built: BuiltDeployment;
let server: RunningServer;
let client: OpenAI;
let contextLength: number;
let pair: RelevanceExample;
const MODEL = 'oai-sft';

beforeAll(async () => {
  built = buildDeployment('oai');
  server = await built.serve();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  contextLength = (JSON.parse(readFileSync(path.join(built.artifact('sft'), 'config.json'), 'utf8')) as { max_position_embeddings: number }).max_position_embeddings;
  [pair] = (await readJsonl<RelevanceExample>(path.join(built.artifact('world'), 'test.jsonl'))) as [RelevanceExample];
}, 300_000);
afterAll(async () => {
  await server?.drain();
  built?.remove();
});

const messages = [{ role: 'user' as const, content: 'Judge this pair.\nQuery: boots' }];
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(server.url + url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body) });
type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } };
const errorOf = async (response: Response) => ((await response.json()) as ErrorBody).error;
const sdkError = async (promise: Promise<unknown>) => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OpenAI.APIError);
  return error as InstanceType<typeof OpenAI.APIError>;
};

describe('streaming through the openai client', () => {
  it('sends the completion token by token as it is generated, then a usage chunk', { timeout: 120_000 }, async () => {
    const maxTokens = 48;
    const whole = await client.chat.completions.create({ model: MODEL, messages, max_tokens: maxTokens, temperature: 0 });
    const expected = whole.choices[0]?.message.content ?? '';
    const started = performance.now();
    const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const arrivals: number[] = [];
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) {
        arrivals.push(performance.now());
        text += content;
      }
      finish ??= chunk.choices[0]?.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    const total = performance.now() - started;
    expect(text).toBe(expected);
    expect(finish).toBe(whole.choices[0]?.finish_reason);
    expect(usage).toEqual(whole.usage);
    // One chunk per token or few: at least 4, spread over at least 30 % of the response's time.
    expect(arrivals.length).toBeGreaterThanOrEqual(4);
    expect(((arrivals.at(-1) as number) - (arrivals[0] as number)) / total).toBeGreaterThanOrEqual(0.3);
  });
});

describe('errors in OpenAI shape', () => {
  it('answers max_tokens past the context with a 400 naming the limit', async () => {
    const e = await sdkError(client.chat.completions.create({ model: MODEL, messages, max_tokens: 100_000 }));
    expect(e.status).toBe(400);
    expect(e.code).toBe('context_length_exceeded');
    expect(e.type).toBe('invalid_request_error');
    expect(e.param).toBe('max_tokens');
    expect(e.message).toContain(`maximum context length is ${contextLength} tokens`);
    expect((e.error as { message: string }).message).toContain(String(contextLength));
  });

  it('answers a prompt past the context with a 400 naming the limit', async () => {
    const long = 'boots '.repeat(contextLength * 2);
    const e = await sdkError(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: long }], max_tokens: 4 }));
    expect([e.status, e.code, e.param]).toEqual([400, 'context_length_exceeded', 'messages']);
    expect(e.message).toContain(`maximum context length is ${contextLength} tokens`);
  });

  it('a wrong model is a 404 the SDK reads', async () => {
    const e = await sdkError(client.chat.completions.create({ model: 'gpt-4o', messages }));
    expect([e.status, e.code, e.type, e.param]).toEqual([404, 'model_not_found', 'invalid_request_error', 'model']);
    expect(e.message).toContain(MODEL);
    expect(await errorOf(await fetch(`${server.url}/v1/models/gpt-4o`))).toMatchObject({ code: 'model_not_found' });
    expect(await (await fetch(`${server.url}/v1/models/${MODEL}`)).json()).toMatchObject({ id: MODEL, object: 'model' });
  });

  it('405 for another method on a known route, 404 for an unknown one, 413, all in the same shape', async () => {
    const get = await fetch(`${server.url}/v1/relevance`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect(await errorOf(get)).toMatchObject({ type: 'invalid_request_error', code: 'method_not_allowed' });
    const missing = await fetch(`${server.url}/v2/nothing`);
    expect(missing.status).toBe(404);
    expect(await errorOf(missing)).toMatchObject({ code: 'unknown_route' });
    const big = await post('/v1/relevance', { query: 'boots', items: [{ title: 'x'.repeat(1_100_000) }] });
    expect(big.status).toBe(413);
    expect(await errorOf(big)).toMatchObject({ type: 'invalid_request_error', code: 'body_too_large' });
    const notJson = await post('/v1/relevance', '{"query": "boots",');
    expect(notJson.status).toBe(400);
    expect((await errorOf(notJson)).message).toMatch(/JSON/);
  });

  it('decodes a gzip body, and refuses an encoding it does not know with 415', async () => {
    const body = JSON.stringify({ query: pair.query, items: [pair.item] });
    const plain = await post('/v1/relevance', body);
    const zipped = await post('/v1/relevance', gzipSync(body), { 'content-encoding': 'gzip' });
    expect(zipped.status).toBe(200);
    expect(await zipped.json()).toEqual(await plain.json());
    const compress = await post('/v1/relevance', body, { 'content-encoding': 'compress' });
    expect(compress.status).toBe(415);
    expect(await errorOf(compress)).toMatchObject({ code: 'unsupported_content_encoding' });
  });
});

describe('/v1/relevance input checks', () => {
  it('refuses blank text, control characters and invalid UTF-8 with a 400 naming the field', async () => {
    const item = { title: 'Leather Boots' };
    const cases: [unknown, string, RegExp][] = [
      [{ query: '   ', items: [item] }, 'query', /blank/],
      [{ query: '\t\n', items: [item] }, 'query', /blank/],
      [{ query: 'boots', items: [item, { title: ' ' }] }, 'items[1].title', /blank/],
      [{ query: 'bo\u0000ots', items: [item] }, 'query', /U\+0000 at offset 2/],
      [{ query: 'boots', items: [{ ...item, description: 'x\u001by' }] }, 'items[0].description', /U\+001B/],
    ];
    for (const [body, param, message] of cases) {
      const response = await post('/v1/relevance', body);
      expect(response.status, param).toBe(400);
      const error = await errorOf(response);
      expect(error.param).toBe(param);
      expect(error.message).toMatch(message);
    }
    // The bytes C3 28 are not UTF-8 (C3 starts a two-byte sequence; 28 cannot continue it).
    const invalid = Buffer.concat([Buffer.from('{"query":"boots","items":[{"title":"Boots '), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
    const response = await post('/v1/relevance', invalid);
    expect(response.status).toBe(400);
    expect(await errorOf(response)).toMatchObject({ param: 'items[0].title', code: 'invalid_encoding' });
    // Tabs and newlines are text, and an empty optional field is allowed.
    expect((await post('/v1/relevance', { query: 'brown\tboots', items: [{ title: 'Boots\nbrown', description: '' }] })).status).toBe(200);
  });
});

describe('what OpenAI clients expect', () => {
  it('n, stop, content parts, the developer role and /v1/completions', { timeout: 120_000 }, async () => {
    const base = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 24, temperature: 0 });
    const text = base.choices[0]?.message.content ?? '';
    // Content parts and the developer role read as the same prompt as a string and system message.
    const parts = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'text', text: 'Judge this pair.\n' }, { type: 'text', text: 'Query: boots' }] }], max_tokens: 24, temperature: 0 });
    expect(parts.choices[0]?.message.content).toBe(text);
    const system = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'system', content: 'Be brief.' }, ...messages], max_tokens: 24, temperature: 0 });
    const developer = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'developer', content: 'Be brief.' }, ...messages], max_tokens: 24, temperature: 0 });
    expect(developer.choices[0]?.message.content).toBe(system.choices[0]?.message.content);
    const image = await sdkError(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://x/y.png' } }] }] }));
    expect([image.status, image.param]).toEqual([400, 'messages[0].content[0].type']);

    // stop: the text ends before the first occurrence of the sequence, which is left out.
    const cut = text.slice(3, 5);
    expect(cut.length).toBe(2);
    const stopped = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 24, temperature: 0, stop: [cut] });
    expect(stopped.choices[0]?.message.content).toBe(text.slice(0, text.indexOf(cut)));
    expect(stopped.choices[0]?.finish_reason).toBe('stop');
    const streamedStop = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 24, temperature: 0, stop: cut, stream: true });
    let streamedText = '';
    for await (const chunk of streamedStop) streamedText += chunk.choices[0]?.delta.content ?? '';
    expect(streamedText).toBe(text.slice(0, text.indexOf(cut)));

    // n: that many completions of one prompt, each with its index; sampled, with a seed, reproducibly.
    const sampled = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 1, seed: 7, n: 3 });
    expect(sampled.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(new Set(sampled.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
    const again = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 1, seed: 7, n: 3 });
    expect(again.choices.map((c) => c.message.content)).toEqual(sampled.choices.map((c) => c.message.content));
    expect(sampled.usage?.completion_tokens).toBeGreaterThan(12);

    // /v1/completions: the raw prompt, no chat template; max_tokens counts exactly.
    const completion = await client.completions.create({ model: MODEL, prompt: 'Query: boots', max_tokens: 5, temperature: 0 });
    expect(completion.object).toBe('text_completion');
    expect(completion.usage?.completion_tokens).toBeLessThanOrEqual(5);
    expect(typeof completion.choices[0]?.text).toBe('string');
  });

  it('batches concurrent chats in the worker, each answered as it would be alone', { timeout: 120_000 }, async () => {
    const ask = (maxTokens: number) => client.chat.completions.create({ model: MODEL, messages, max_tokens: maxTokens, temperature: 0 });
    const singles: string[] = [];
    for (const n of [6, 10, 14, 18]) singles.push((await ask(n)).choices[0]?.message.content ?? '');
    const before = await chatCounters();
    // A long chat first keeps the worker busy, so the four arrive while it runs and wait together,
    // however slowly a loaded machine delivers them (sent bare, each could finish before the next came).
    const blocker = ask(400);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const together = await Promise.all([6, 10, 14, 18].map(ask));
    await blocker;
    const after = await chatCounters();
    expect(together.map((c) => c.choices[0]?.message.content)).toEqual(singles);
    expect(after.chats - before.chats).toBe(5);
    expect(after.batches - before.batches).toBeLessThanOrEqual(2);
  });
});

async function chatCounters(): Promise<{ chats: number; batches: number }> {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { chats: read('lore_llm_chats'), batches: read('lore_llm_chat_batches') };
}

describe('cancellation', () => {
  it('stops generating a chat whose client went away, so the next one does not wait for it', { timeout: 180_000 }, async () => {
    const long = Math.min(400, contextLength - 64);
    // How long one such chat takes when nobody cancels it (eos may end it early: only a chat that runs long counts).
    const started = performance.now();
    const full = await client.chat.completions.create({ model: MODEL, messages, max_tokens: long, temperature: 0 });
    const fullSeconds = (performance.now() - started) / 1000;
    expect(full.usage?.completion_tokens).toBe(long);

    // Six chats whose clients read the first chunk, then go away.
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        const response = await post('/v1/chat/completions', { model: MODEL, messages, max_tokens: long, temperature: 0, stream: true });
        const reader = response.body?.getReader();
        await reader?.read();
        await reader?.cancel();
      }),
    );
    const nextStarted = performance.now();
    const next = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 4, temperature: 0 });
    const nextSeconds = (performance.now() - nextStarted) / 1000;
    expect(next.choices).toHaveLength(1);
    // Six uncancelled chats would keep the worker for about fullSeconds (one batch of six); the next
    // chat waits at most for the step in progress.
    expect(nextSeconds).toBeLessThan(fullSeconds / 2);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/lore_requests_total\{route="\/v1\/chat\/completions",status="499",outcome="cancelled"\} 6/);
  });
});

describe('an API key', () => {
  it('is required when set: 401 in OpenAI shape without it or with a wrong one', { timeout: 120_000 }, async () => {
    const guarded = await built.serve({ apiKey: 'sk-test-right' });
    try {
      const wrong = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: 'sk-test-wrong', maxRetries: 0 });
      const e = await sdkError(wrong.models.list());
      expect([e.status, e.type, e.code]).toEqual([401, 'authentication_error', 'invalid_api_key']);
      expect((await fetch(`${guarded.url}/v1/models`)).status).toBe(401);
      const right = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: 'sk-test-right', maxRetries: 0 });
      expect((await right.models.list()).data.map((m) => m.id)).toEqual([MODEL]);
      // Health and metrics stay open to the service manager and the scraper.
      expect((await fetch(`${guarded.url}/healthz`)).status).toBe(200);
    } finally {
      await guarded.drain();
    }
  });
});
