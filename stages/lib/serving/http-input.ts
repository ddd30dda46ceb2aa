/**
 * What the server accepts beyond its JSON schemas: request bodies in UTF-8 only (a body with invalid
 * bytes is a 400 naming the field they are in, where Node's decoder would have turned them into
 * U+FFFD silently), gzip/deflate/br bodies decoded (any other Content-Encoding is a 415), and text
 * fields that are neither blank nor carry control characters (a NUL in a query is a client's bug,
 * not a word: the distilled model would read it as a token and answer it with confidence).
 */
import { isUtf8, type Buffer } from 'node:buffer';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { ApiError, invalidRequest } from './api-errors.ts';

const DECODERS: Record<string, () => NodeJS.ReadWriteStream> = { gzip: createGunzip, 'x-gzip': createGunzip, deflate: createInflate, br: createBrotliDecompress };

/** Installs the UTF-8 JSON parser and the Content-Encoding decoding on `app`. */
export function acceptJsonBodies(app: FastifyInstance): void {
  app.addHook('preParsing', (request, _reply, payload, done) => {
    const encoding = String(request.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
    if (encoding === 'identity' || encoding === '') return done(null, payload);
    const decoder = DECODERS[encoding];
    if (!decoder) {
      return done(new ApiError(415, `Content-Encoding ${encoding} is not supported (send identity, gzip, deflate or br)`, 'invalid_request_error', 'unsupported_content_encoding', null), payload);
    }
    // The body limit then counts decoded bytes, so a small compressed bomb is still a 413.
    const decoded = (payload as Readable).pipe(decoder()) as unknown as Readable & { receivedEncodedLength?: number };
    decoded.on('error', () => {}); // a corrupt stream fails the parser, answered as a 400 below
    (payload as Readable).on('data', (chunk: Buffer) => (decoded.receivedEncodedLength = (decoded.receivedEncodedLength ?? 0) + chunk.length));
    done(null, decoded);
  });

  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    const bytes = body as Buffer;
    if (isUtf8(bytes)) return parseJson(request, bytes.toString('utf8'), done);
    // Name the field the bad bytes are in: parse the lossy decoding and find the replaced characters.
    parseJson(request, bytes.toString('utf8'), (error, parsed) => {
      const where = error ? null : fieldWith(parsed, (s) => s.includes('\uFFFD'));
      done(invalidRequest(where ?? '', `${where === null ? 'the body' : 'the value'} is not valid UTF-8`, 'invalid_encoding'), undefined);
    });
  });
}

/** The key path of the first string in `value` that `test` holds for (keys included), or null. */
function fieldWith(value: unknown, test: (s: string) => boolean, at = ''): string | null {
  if (typeof value === 'string') return test(value) ? at : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = fieldWith(value[i], test, `${at}[${i}]`);
      if (found !== null) return found;
    }
    return null;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      const path = at === '' ? key : `${at}.${key}`;
      if (test(key)) return path;
      const found = fieldWith(inner, test, path);
      if (found !== null) return found;
    }
  }
  return null;
}

// C0 controls but tab, newline and carriage return; DEL; C1 controls.
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/u;

/** Why a text field is refused (blank, or a control character at some offset), or undefined. */
export function textProblem(text: string, options: { blankAllowed?: boolean } = {}): string | undefined {
  if (!options.blankAllowed && text.trim() === '') return 'must not be blank (empty or only whitespace)';
  const control = CONTROL.exec(text);
  if (control) return `contains the control character U+${(control[0].codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0')} at offset ${control.index}`;
  return undefined;
}

/** Throws a 400 naming the first field of `body` whose text is refused; `required` fields may not be blank. */
export function checkTextFields(body: unknown, required: (path: string) => boolean): void {
  let problem = '';
  const path = findProblem(body, '', required, (p) => (problem = p));
  if (path !== null) throw invalidRequest(path, problem);
}

function findProblem(value: unknown, at: string, required: (path: string) => boolean, found: (problem: string) => void): string | null {
  if (typeof value === 'string') {
    const problem = textProblem(value, { blankAllowed: !required(at) });
    if (problem) found(problem);
    return problem ? at : null;
  }
  const entries: [string, unknown][] = Array.isArray(value) ? value.map((v, i) => [`${at}[${i}]`, v]) : value !== null && typeof value === 'object' ? Object.entries(value).map(([k, v]) => [at === '' ? k : `${at}.${k}`, v]) : [];
  for (const [path, inner] of entries) {
    const hit = findProblem(inner, path, required, found);
    if (hit !== null) return hit;
  }
  return null;
}
