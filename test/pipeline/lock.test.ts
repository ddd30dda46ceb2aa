// The store lock under contention: many processes, each time taking over the lock of a dead holder.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES, tempDir } from './cli-helpers.ts';

const { dir, remove } = tempDir('pipeline-lock-stress-');
afterAll(remove);

const CONTENDER = path.join(FIXTURES, 'lock-contender.ts');

function contender(store: string, holders: string, rounds: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CONTENDER, store, holders, String(rounds)]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`contender exited ${code}: ${stderr}`))));
  });
}

describe('store lock', () => {
  it('never has two holders while 8 processes take over 64 dead holders', async () => {
    const store = path.join(dir, 'store');
    const holders = path.join(dir, 'holders');
    mkdirSync(holders, { recursive: true });
    // Every handoff is a takeover of a lock whose holder is gone, with up to 7 processes racing.
    const outputs = await Promise.all(Array.from({ length: 8 }, () => contender(store, holders, 8)));
    const overlaps = outputs.join('').split('\n').filter(Boolean);
    expect(overlaps).toEqual([]);
  });
});
