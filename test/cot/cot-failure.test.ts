// When no rationale verifies, the failure says why and where the per-example reasons are.
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, tempDir } from '../pipeline/cli-helpers.ts';

const { dir, remove } = tempDir('cot-failure-');
let server: Server | undefined;
afterAll(() => {
  server?.close();
  remove();
});

describe('cot stage failure message', () => {
  it('names the dominant reason (every request got HTTP 500) and the rejected file by its full path', async () => {
    let requests = 0;
    server = createServer((request, response) => {
      request.resume();
      request.on('end', () => {
        requests++;
        response.writeHead(500);
        response.end('overloaded');
      });
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    writeFileSync(
      path.join(dir, 'p.yaml'),
      [
        'name: cotfail',
        'stages:',
        '  world: { uses: world, with: { queries: 12, itemsPerType: 2, candidates: 3 } }',
        '  kg: { uses: kg, needs: [world] }',
        '  icl: { uses: icl, needs: [world, kg], with: { facts: 2, shots: 0, rules: none } }',
        '  cot:',
        '    uses: cot',
        '    needs: [icl, kg]',
        '    with:',
        `      teacher: { type: openai, base_url: "http://127.0.0.1:${address.port}/v1", model: m, max_retries: 0 }`,
        '      rounds: [{ name: plain, context: plain }]',
        '      splits: [train]',
        '      limit: 6',
        '',
      ].join('\n'),
    );
    const result = await cli(dir, ['run', 'p.yaml']);
    expect(result.code).toBe(1);
    expect(requests).toBe(6);
    const match = result.stderr.match(
      /error: stage cot failed: no rationale of the 6 train examples verified in any round; all 6 rejections: teacher_error \(HTTP 500\); each example's reason is in (\S+)\n/,
    );
    expect(match, result.stderr).not.toBeNull();
    const rejected = match?.[1] as string;
    expect(path.isAbsolute(rejected) && rejected.endsWith('rejected-train.jsonl')).toBe(true);
    expect(existsSync(rejected)).toBe(true);
  });
});
