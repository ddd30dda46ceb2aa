// What the read-only commands say about a store: an interrupted run, and a store that does not exist.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, cliBackground, FIXTURES, inProcess, waitFor, workspaces } from './cli-helpers.ts';

const workspace = workspaces();

const STEPS = path.join(FIXTURES, 'steps-stage.ts');

describe('run records', () => {
  it('status shows a run killed with SIGKILL as interrupted, not as the run before it', async () => {
    const dir = workspace('pipeline-interrupted-');
    writeFileSync(path.join(dir, 'p.yaml'), `name: k\nstages:\n  train: { uses: ${STEPS}, with: { steps: 1000, sleep_ms: 100 } }\n`);
    const run = cliBackground(dir, ['run', 'p.yaml']);
    const work = path.join(dir, 'checkpoints/work');
    await waitFor(() => existsSync(work) && readdirSync(work).some((fp) => existsSync(path.join(work, fp, 'checkpoints/LATEST'))));

    const during = await cli(dir, ['status', 'p.yaml']);
    expect(during.stdout).toMatch(/^last run: running \(pid \d+\), started /m);

    run.child.kill('SIGKILL');
    await run.done;
    const status = await cli(dir, ['status', 'p.yaml']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^last run: interrupted \(its process \d+ ended without finishing\), started /m);
    const json = JSON.parse((await cli(dir, ['status', 'p.yaml', '--json'])).stdout) as { lastRun: { status: string } };
    expect(json.lastRun.status).toBe('interrupted');
  });
});

describe('a store that does not exist', () => {
  it('is not created by gc --dry-run, gc, status or report', async () => {
    const dir = workspace('pipeline-no-store-');
    writeFileSync(path.join(dir, 'p.yaml'), `name: n\nstages:\n  train: { uses: ${STEPS} }\n`);
    // In-process: four commands in a row.
    const pipeline = inProcess(dir);
    const dry = await pipeline('gc', 'p.yaml', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.out).toBe(`no store at ${path.join(dir, 'checkpoints')}: nothing to collect`);
    expect((await pipeline('gc', 'p.yaml')).code).toBe(0);
    expect((await pipeline('status', 'p.yaml')).code).toBe(0);
    const report = await pipeline('report', 'p.yaml');
    expect(report.code).toBe(1);
    expect(report.err).toBe(`error: no store at ${path.join(dir, 'checkpoints')}: nothing has run yet (run the pipeline first, or name a store with --store, or the report file with --out)`);
    expect(existsSync(path.join(dir, 'checkpoints'))).toBe(false);
  });
});
