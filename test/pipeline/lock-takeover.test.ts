// Issue 34 item 9: a lock left by a holder that cannot be asked (another host) or that is no longer
// the same process (a reused pid) does not block the store for ever, and status names the holder.
import { utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES, inProcess, workspaces } from './cli-helpers.ts';

const workspace = workspaces();
const COUNT = path.join(FIXTURES, 'count-stage.ts');

function storeWithLock(prefix: string, holder: Record<string, unknown>, ageS: number) {
  const dir = workspace(prefix);
  writeFileSync(path.join(dir, 'p.yaml'), `name: l\nstages:\n  a: { uses: ${COUNT} }\n`);
  const lock = path.join(dir, 'checkpoints', 'lock');
  mkdirSync(path.dirname(lock), { recursive: true });
  writeFileSync(lock, JSON.stringify({ token: 'f'.repeat(24), command: 'pipeline run old.yaml', started: '2026-01-02T03:04:05.000Z', ...holder }));
  const then = new Date(Date.now() - ageS * 1000);
  utimesSync(lock, then, then);
  return inProcess(dir);
}

describe('store lock takeover', () => {
  it('takes over a lock from another host that has not been refreshed for the timeout', async () => {
    const pipeline = storeWithLock('lock-old-host-', { pid: 4242, host: 'old-container-3f2a' }, 3600);
    const status = await pipeline('status', 'p.yaml');
    expect(status.out).toMatch(/^lock: stale, left by pid 4242 on old-container-3f2a \(pipeline run old\.yaml, since 2026-01-02T03:04:05\.000Z; another host: taken over when not refreshed for 300 s, or with --break-lock\): its host old-container-3f2a has not refreshed it for 36\d\d s; the next run takes it over$/m);
    const run = await pipeline('run', 'p.yaml', '--no-wait');
    expect(run.code).toBe(0);
    expect(run.err).toContain('taking over the store lock of pid 4242 on old-container-3f2a');
    expect((await pipeline('status', 'p.yaml')).out).toMatch(/^lock: free$/m);
  });

  it('waits for a fresh lock from another host, and --break-lock takes it', async () => {
    const pipeline = storeWithLock('lock-live-host-', { pid: 4242, host: 'login-node-7' }, 5);
    const status = await pipeline('status', 'p.yaml');
    expect(status.out).toMatch(/^lock: held by pid 4242 on login-node-7 \(pipeline run old\.yaml, since .*\)$/m);
    const busy = await pipeline('run', 'p.yaml', '--no-wait');
    expect(busy.code).toBe(1);
    expect(busy.err).toContain('error: the store is locked by pid 4242 on login-node-7');
    const broken = await pipeline('run', 'p.yaml', '--no-wait', '--break-lock');
    expect(broken.code).toBe(0);
    expect(broken.err).toContain('taking over the store lock of pid 4242 on login-node-7 (pipeline run old.yaml, since 2026-01-02T03:04:05.000Z; another host: taken over when not refreshed for 300 s, or with --break-lock): broken with --break-lock');
  });

  it('takes over a lock whose pid is alive but is another process (a reused pid)', async () => {
    // This test's own pid is alive; the lock says it started at another time (on another boot).
    const pipeline = storeWithLock('lock-reused-pid-', { pid: process.pid, host: os.hostname(), processStart: 'another-boot:12345' }, 1);
    const run = await pipeline('run', 'p.yaml', '--no-wait');
    expect(run.code).toBe(0);
    expect(run.err).toContain(`taking over the store lock of pid ${process.pid} on ${os.hostname()} (pipeline run old.yaml, since 2026-01-02T03:04:05.000Z): pid ${process.pid} is now another process (its start time differs from the lock's)`);
  });
});
