// A stage's quality checks: listed at the end of the run, fatal only under --strict, and still
// reported when the artifact is cached; the run record carries each stage's share of the wall time.
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, inProcess, workspaces } from './cli-helpers.ts';

const workspace = workspaces();
const CHECK = path.join(FIXTURES, 'check-stage.ts');

function pipelineWith(passed: boolean): { dir: string; pipeline: ReturnType<typeof inProcess> } {
  const dir = workspace('pipeline-checks-');
  writeFileSync(path.join(dir, 'p.yaml'), `name: q\nstages:\n  judge: { uses: ${CHECK}, with: { passed: ${passed} } }\n`);
  return { dir, pipeline: inProcess(dir) };
}

describe('quality checks', () => {
  it('a failed check is listed but exits 0 without --strict, and exits 1 under --strict after publishing, cached or not', async () => {
    const { dir, pipeline } = pipelineWith(false);
    const lenient = await pipeline('run', 'p.yaml');
    expect(lenient.code).toBe(0);
    expect(lenient.err).toContain('check failed: judge output-sane: output is one constant');
    expect(lenient.out).toMatch(/succeeded: 1 built, 0 cached, 0 failed, 0 not run; 1 quality checks failed$/m);

    // Cached now: the artifact it delivers still failed its check.
    const strict = await pipeline('run', 'p.yaml', '--strict');
    expect(strict.code).toBe(1);
    expect(strict.err).toContain('check failed: judge output-sane');
    expect(strict.out).toContain('(--strict: exit 1)');
    const record = JSON.parse(readFileSync(path.join(dir, 'checkpoints/runs/q/latest.json'), 'utf8')) as { status: string; stages: { failedChecks?: { name: string }[] }[] };
    expect(record.status).toBe('succeeded');
    expect(record.stages[0]?.failedChecks?.map((c) => c.name)).toEqual(['output-sane']);

    // Built under --strict: published all the same.
    const fresh = pipelineWith(false);
    expect((await fresh.pipeline('run', 'p.yaml', '--strict')).code).toBe(1);
    expect((await fresh.pipeline('run', 'p.yaml')).out).toMatch(/0 built, 1 cached/);
  });

  it('a passed check changes nothing, --strict included', async () => {
    const { pipeline } = pipelineWith(true);
    const run = await pipeline('run', 'p.yaml', '--strict');
    expect(run.code).toBe(0);
    expect(run.err).not.toContain('check failed');
  });

  it("prints and records each built stage's share of the run's wall time", async () => {
    const { dir, pipeline } = pipelineWith(true);
    const run = await pipeline('run', 'p.yaml');
    expect(run.out).toMatch(/^time: \d+\.\ds wall; judge \d+\.\ds \(\d+%\)$/m);
    const record = JSON.parse(readFileSync(path.join(dir, 'checkpoints/runs/q/latest.json'), 'utf8')) as { wallS: number; stages: { durationS: number; wallShare: number }[] };
    const [stage] = record.stages;
    expect(record.wallS).toBeGreaterThan(0);
    expect(stage?.wallShare).toBeCloseTo((stage?.durationS ?? NaN) / record.wallS, 10);
    expect(stage?.wallShare).toBeLessThanOrEqual(1);
  });
});
