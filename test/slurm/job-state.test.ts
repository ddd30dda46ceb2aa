import { describe, expect, it } from 'vitest';
import { classifyState, normalizeState, shouldRetry } from '../../pipeline/slurm/job-state.ts';

describe('classifyState', () => {
  it('treats queued, running and completing jobs as not final', () => {
    // COMPLETING is what a job shows right after scancel: the stage may still be publishing.
    for (const state of ['PENDING', 'RUNNING', 'COMPLETING', 'CONFIGURING', 'REQUEUED']) {
      expect(classifyState(state)).toEqual({ final: false, state });
    }
  });

  it('treats COMPLETED as success', () => {
    expect(classifyState('COMPLETED')).toEqual({ final: true, ok: true, state: 'COMPLETED' });
  });

  it('reads sacct detail such as "CANCELLED by 0" as the bare state', () => {
    expect(normalizeState('CANCELLED by 0')).toBe('CANCELLED');
    expect(classifyState('CANCELLED by 0')).toMatchObject({ final: true, ok: false, state: 'CANCELLED' });
  });

  it('names the limit that was hit so the user knows which key to raise', () => {
    expect(classifyState('TIMEOUT', { time: '00:10:00' })).toMatchObject({
      ok: false,
      reason: 'the job hit its time limit (slurm.time: 00:10:00); raise slurm.time',
    });
    expect(classifyState('OUT_OF_MEMORY', { mem: '2G' })).toMatchObject({
      ok: false,
      reason: 'the job ran out of memory (slurm.mem: 2G); raise slurm.mem',
    });
    expect(classifyState('NODE_FAIL')).toMatchObject({ ok: false, reason: 'the node running the job failed' });
  });

  it('reports the exit code or signal of a FAILED job', () => {
    // sacct ExitCode is "code:signal".
    expect(classifyState('FAILED', { exitCode: '3:0' })).toMatchObject({ reason: 'the stage command failed (exit code 3)' });
    expect(classifyState('FAILED', { exitCode: '0:9' })).toMatchObject({ reason: 'the stage command failed (killed by signal 9)' });
  });

  it('fails on a state it does not know rather than waiting forever', () => {
    expect(classifyState('WEIRD_STATE')).toMatchObject({ final: true, ok: false, reason: expect.stringContaining('WEIRD_STATE') });
  });
});

describe('shouldRetry', () => {
  const policy = { retries: 2, retryOn: ['NODE_FAIL', 'preempted'] };

  it('retries listed states until the retries are used up', () => {
    const nodeFail = classifyState('NODE_FAIL');
    // attempt counts from 1: attempts 1 and 2 may be retried (2 retries), attempt 3 is the last.
    expect(shouldRetry(nodeFail, 1, policy)).toBe(true);
    expect(shouldRetry(nodeFail, 2, policy)).toBe(true);
    expect(shouldRetry(nodeFail, 3, policy)).toBe(false);
  });

  it('matches configured states case-insensitively', () => {
    expect(shouldRetry(classifyState('PREEMPTED'), 1, policy)).toBe(true);
  });

  it('never retries a stage failure, a success or a running job', () => {
    expect(shouldRetry(classifyState('FAILED'), 1, policy)).toBe(false);
    expect(shouldRetry(classifyState('COMPLETED'), 1, policy)).toBe(false);
    expect(shouldRetry(classifyState('RUNNING'), 1, policy)).toBe(false);
    expect(shouldRetry(classifyState('NODE_FAIL'), 1, { retries: 0, retryOn: ['NODE_FAIL'] })).toBe(false);
  });
});
