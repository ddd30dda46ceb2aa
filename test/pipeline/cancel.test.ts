// Cancelling a run: the whole process tree of an exec stage stops, nothing it wrote late is ever
// published, the run exits 130 and `status` says it was interrupted.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, cliBackground, waitFor, workspaces } from './cli-helpers.ts';

const workspace = workspaces();

/** Running, not a zombie waiting for a reaper (a container's init may never reap it). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

// The repro, in a script: a background grandchild that writes into $PIPELINE_OUT after
// `seconds`. The sleeper records its pid (`exec` keeps it) so a test can see whether it outlived the run.
function slowJob(dir: string, seconds: number): void {
  writeFileSync(
    path.join(dir, 'job.sh'),
    `touch started\n(sh -c 'echo $$ > sleeper.pid; exec sleep ${seconds}'; echo x > "$PIPELINE_OUT/late-$$") &\nwait\n`,
  );
  writeFileSync(path.join(dir, 'p.yaml'), 'name: e\nstages:\n  slow: { uses: exec, with: { command: sh job.sh } }\n');
}

function lateFiles(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((file) => path.basename(file).startsWith('late-'));
}

describe('cancelling an exec stage', () => {
  it('kills the command with its children, exits 130, and a rerun publishes only its own output', async () => {
    const dir = workspace('pipeline-exec-cancel-');
    slowJob(dir, 4);
    const run = cliBackground(dir, ['run', 'p.yaml']);
    await waitFor(() => existsSync(path.join(dir, 'sleeper.pid')));
    run.child.kill('SIGTERM');
    const cancelled = await run.done;
    expect(cancelled.code).toBe(130);
    expect(cancelled.stdout).toContain('cancelled: 0 built');
    // The grandchild got the signal with its group: it never wrote, and it is gone (allowing a
    // moment for the orphan to be reaped).
    expect(lateFiles(path.join(dir, 'checkpoints'))).toEqual([]);
    const sleeper = Number(readFileSync(path.join(dir, 'sleeper.pid'), 'utf8'));
    await waitFor(() => !alive(sleeper), 2000);

    const again = await cli(dir, ['run', 'p.yaml']);
    expect(again.code, again.stderr).toBe(0);
    const ref = readFileSync(path.join(dir, 'checkpoints/refs/e/slow'), 'utf8').trim();
    expect(lateFiles(path.join(dir, 'checkpoints/objects', ref))).toHaveLength(1);
  });

  it('a second SIGTERM exits at once, and still leaves no process of the stage behind', async () => {
    const dir = workspace('pipeline-exec-cancel-twice-');
    slowJob(dir, 30);
    const run = cliBackground(dir, ['run', 'p.yaml']);
    await waitFor(() => existsSync(path.join(dir, 'sleeper.pid')));
    let stderr = '';
    run.child.stderr?.on('data', (chunk) => (stderr += chunk));
    run.child.kill('SIGTERM');
    await waitFor(() => stderr.includes('SIGTERM: stopping'));
    run.child.kill('SIGTERM');
    const result = await run.done;
    expect(result.code).toBe(130);
    const sleeper = Number(readFileSync(path.join(dir, 'sleeper.pid'), 'utf8'));
    await waitFor(() => !alive(sleeper), 2000);
  });

  it('a rerun never writes into the folder of an attempt whose process escaped the stop', async () => {
    const dir = workspace('pipeline-exec-escaped-');
    // Attempt 1 starts a writer in its own session (setsid: out of reach of any group kill) that
    // waits for `go`, then writes into attempt 1's $PIPELINE_OUT. Attempt 2 says `go` and waits
    // until the write was tried: had it been given the same output folder, `late-escaped` would be published.
    writeFileSync(
      path.join(dir, 'job.sh'),
      [
        'if [ ! -f attempt1 ]; then',
        '  touch attempt1',
        `  setsid sh -c 'touch escaped; while [ ! -f go ]; do sleep 0.05; done; (echo x > "$PIPELINE_OUT/late-escaped") 2>/dev/null; touch written' &`,
        '  sleep 30',
        'else',
        '  touch go',
        '  i=0; while [ ! -f written ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done',
        'fi',
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(dir, 'p.yaml'), 'name: e\nstages:\n  job: { uses: exec, with: { command: sh job.sh } }\n');
    const run = cliBackground(dir, ['run', 'p.yaml']);
    // `escaped` is written after setsid, so the writer is out of the group when the stop comes.
    await waitFor(() => existsSync(path.join(dir, 'escaped')));
    run.child.kill('SIGTERM');
    expect((await run.done).code).toBe(130);

    const again = await cli(dir, ['run', 'p.yaml']);
    expect(again.code, again.stderr).toBe(0);
    expect(existsSync(path.join(dir, 'written'))).toBe(true);
    const ref = readFileSync(path.join(dir, 'checkpoints/refs/e/job'), 'utf8').trim();
    expect(lateFiles(path.join(dir, 'checkpoints/objects', ref))).toEqual([]);
  });
});
