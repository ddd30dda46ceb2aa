import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OpenAiTeacher, TeacherAuthError, type OpenAiTeacherConfig } from '../../stages/cot/openai-teacher.ts';

const SECRET = 'sk-test-very-secret-4242';
type Handler = (request: IncomingMessage, body: string, response: ServerResponse) => void;

let server: Server | undefined;
const cacheDirs: string[] = [];
afterEach(async () => {
  server?.close();
  await Promise.all(cacheDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A loopback server whose answer to the n-th request is `handlers[n]` (the last one repeats). */
async function serve(handlers: Handler[]): Promise<{ url: string; calls: () => number; bodies: string[] }> {
  let count = 0;
  const bodies: string[] = [];
  server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      bodies.push(body);
      const handler = handlers[Math.min(count, handlers.length - 1)] as Handler;
      count++;
      handler(request, body, response);
    });
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return { url: `http://127.0.0.1:${address.port}/v1`, calls: () => count, bodies };
}

const ok: Handler = (request, _body, response) => {
  const auth = request.headers.authorization;
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ choices: [{ message: { content: `answer (auth ${auth === `Bearer ${SECRET}`})` } }] }));
};
const status =
  (code: number, headers: Record<string, string> = {}): Handler =>
  (_request, _body, response) => {
    response.writeHead(code, headers);
    response.end(`error ${code} for key ${SECRET}`);
  };

const silentLog = { info() {}, warn() {}, debug() {} };

async function teacher(url: string, overrides: Partial<OpenAiTeacherConfig> = {}) {
  const cacheDir = await mkdtemp(join(tmpdir(), 'teacher-cache-'));
  cacheDirs.push(cacheDir);
  const config: OpenAiTeacherConfig = {
    baseUrl: url,
    model: 'judge-1',
    apiKeyEnv: 'TEST_TEACHER_KEY',
    temperature: 0,
    maxTokens: 64,
    concurrency: 2,
    requestsPerMinute: 600,
    maxRetries: 3,
    backoffS: 0.05,
    timeoutS: 5,
    ...overrides,
  };
  return { teacher: new OpenAiTeacher(config, cacheDir, silentLog, { TEST_TEACHER_KEY: SECRET }), cacheDir };
}

const request = { id: 'q1-i1', messages: [{ role: 'user' as const, content: 'grade this' }] };

describe('OpenAiTeacher', () => {
  it('sends the model, messages and key, and caches the answer by request hash', async () => {
    const server = await serve([ok]);
    const { teacher: t } = await teacher(server.url);
    expect(await t.complete(request)).toEqual({ id: 'q1-i1', text: 'answer (auth true)', cached: false });
    expect(JSON.parse(server.bodies[0] as string)).toMatchObject({ model: 'judge-1', messages: request.messages, max_tokens: 64 });
    expect(await t.complete(request)).toEqual({ id: 'q1-i1', text: 'answer (auth true)', cached: true });
    expect(server.calls()).toBe(1);
  });

  it('waits as long as Retry-After says on a 429, then succeeds', async () => {
    const server = await serve([status(429, { 'retry-after': '1' }), ok]);
    const { teacher: t } = await teacher(server.url);
    const started = Date.now();
    const answer = await t.complete(request);
    expect(answer).toMatchObject({ text: 'answer (auth true)' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(server.calls()).toBe(2);
  });

  it('retries 500s and malformed JSON, and gives up after maxRetries with the reason', async () => {
    const malformed: Handler = (_q, _b, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{"choices": [');
    };
    const recovering = await serve([status(500), malformed, ok]);
    const { teacher: t1 } = await teacher(recovering.url);
    expect(await t1.complete(request)).toMatchObject({ text: 'answer (auth true)' });
    expect(recovering.calls()).toBe(3);
    server?.close();

    const failing = await serve([status(503)]);
    const { teacher: t2 } = await teacher(failing.url, { maxRetries: 2 });
    expect(await t2.complete(request)).toEqual({ id: 'q1-i1', error: 'HTTP 503' });
    expect(failing.calls()).toBe(3);
  });

  it('times out a request that never answers and retries it', async () => {
    const hang: Handler = () => {};
    const server = await serve([hang, ok]);
    const { teacher: t } = await teacher(server.url, { timeoutS: 0.3 });
    expect(await t.complete(request)).toMatchObject({ text: 'answer (auth true)' });
    expect(server.calls()).toBe(2);
  });

  it('does not retry a 400 and stops everything on a 401, without leaking the key', async () => {
    const bad = await serve([status(400)]);
    const { teacher: t1 } = await teacher(bad.url);
    const answer = await t1.complete(request);
    expect(answer).toMatchObject({ error: expect.stringContaining('HTTP 400') });
    expect(JSON.stringify(answer)).not.toContain(SECRET);
    expect(bad.calls()).toBe(1);
    server?.close();

    const denied = await serve([status(401)]);
    const { teacher: t2 } = await teacher(denied.url);
    const error = await t2.complete(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TeacherAuthError);
    expect((error as Error).message).toContain('$TEST_TEACHER_KEY');
    expect((error as Error).message).not.toContain(SECRET);
  });

  it('never writes the key into its cache', async () => {
    const server = await serve([ok]);
    const { teacher: t, cacheDir } = await teacher(server.url);
    const answers = await t.completeAll(
      [request, { id: 'q2-i1', messages: [{ role: 'user', content: 'another' }] }],
      () => {},
    );
    expect(answers).toHaveLength(2);
    const files = await readdir(cacheDir);
    expect(files).toHaveLength(2);
    for (const file of files) expect(await readFile(join(cacheDir, file), 'utf8')).not.toContain(SECRET);
  });

  it('masks the key before cutting an error body short, so no piece of it survives', async () => {
    // The key starts at character 190 of the body: cut at 200 first, "sk-test-ve" would escape the mask.
    const straddling: (code: number) => Handler = (code) => (_request, _body, response) => {
      response.writeHead(code);
      response.end(`${'x'.repeat(190)}${SECRET} and more`);
    };
    const piece = SECRET.slice(0, 8);
    const bad = await serve([straddling(400)]);
    const answer = await (await teacher(bad.url)).teacher.complete(request);
    expect(answer).toMatchObject({ error: expect.stringContaining('HTTP 400') });
    expect(JSON.stringify(answer)).not.toContain(piece);
    server?.close();

    const denied = await serve([straddling(401)]);
    const error = await (await teacher(denied.url)).teacher.complete(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TeacherAuthError);
    expect((error as Error).message).not.toContain(piece);
  });

  it('does not cache an answer that contains the key, and masks it in the answer', async () => {
    const echo: Handler = (_request, _body, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ choices: [{ message: { content: `you sent ${SECRET}` } }] }));
    };
    const server = await serve([echo]);
    const { teacher: t, cacheDir } = await teacher(server.url);
    const answer = await t.complete(request);
    expect(answer).toEqual({ id: 'q1-i1', text: 'you sent ***', cached: false });
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('masks an echo of the key in base64, URL-encoded or split in two, and caches none of them', async () => {
    const echoes = [Buffer.from(SECRET).toString('base64'), encodeURIComponent(`${SECRET}/`), `${SECRET.slice(0, 10)} / ${SECRET.slice(10)}`];
    const echo: (text: string) => Handler = (text) => (_request, _body, response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ choices: [{ message: { content: `you sent ${text}` } }] }));
    };
    // The n-th request gets the n-th echo.
    const server = await serve(echoes.map(echo));
    const { teacher: t, cacheDir } = await teacher(server.url);
    for (const text of echoes) {
      const answer = await t.complete(request);
      expect(answer, text).toEqual({ id: 'q1-i1', text: text.includes(' / ') ? 'you sent *** / ***' : expect.stringMatching(/^you sent \*\*\*/), cached: false });
      expect(JSON.stringify(answer), text).not.toContain(SECRET.slice(0, 8));
    }
    expect(await readdir(cacheDir)).toEqual([]);
  });
});
