import { describe, expect, it } from 'vitest';
import {
  parseSacctOutput,
  parseSbatchOutput,
  parseSqueueOutput,
  SlurmClient,
  SlurmCommandError,
  type RunCommand,
} from '../../pipeline/slurm/slurm-client.ts';

describe('parsers', () => {
  it('reads the job id from sbatch --parsable, with or without a cluster name', () => {
    expect(parseSbatchOutput('42\n')).toBe('42');
    expect(parseSbatchOutput('42;cluster-a\n')).toBe('42');
    expect(() => parseSbatchOutput('sbatch: error: oops')).toThrow(/printed no job id/);
  });

  it('reads squeue rows', () => {
    expect(parseSqueueOutput('3|PENDING|Dependency\n4|RUNNING|None\n')).toEqual([
      { jobId: '3', state: 'PENDING', reason: 'Dependency' },
      { jobId: '4', state: 'RUNNING', reason: 'None' },
    ]);
  });

  it('reads sacct rows, skipping job steps and keeping the last record of a job', () => {
    const text = ['7|NODE_FAIL|0:0', '7.batch|CANCELLED|0:15', '8|FAILED|3:0', '7|COMPLETED|0:0', ''].join('\n');
    expect(parseSacctOutput(text)).toEqual([
      { jobId: '7', state: 'COMPLETED', exitCode: '0:0' },
      { jobId: '8', state: 'FAILED', exitCode: '3:0' },
    ]);
  });
});

/** A fake Slurm: answers each command from a function and records the calls. */
function fakeSlurm(answer: (file: string, args: readonly string[]) => string) {
  const calls: string[] = [];
  const run: RunCommand = async (file, args) => {
    calls.push(`${file} ${args.join(' ')}`);
    return answer(file, args);
  };
  return { calls, client: new SlurmClient(run) };
}

describe('SlurmClient.states', () => {
  it('takes live states from squeue and final ones from sacct', async () => {
    const { client, calls } = fakeSlurm((file) => {
      if (file === 'squeue') return '1|RUNNING|None\n2|FAILED|NonZeroExitCode\n';
      if (file === 'sacct') return '2|FAILED|3:0\n';
      throw new Error(file);
    });
    const states = await client.states(['1', '2']);
    expect(states.get('1')).toEqual({ jobId: '1', state: 'RUNNING', reason: 'None' });
    expect(states.get('2')).toEqual({ jobId: '2', state: 'FAILED', exitCode: '3:0', reason: 'NonZeroExitCode' });
    // sacct is asked only about the job squeue says has ended.
    expect(calls[1]).toBe('sacct -X -n -P -j 2 -o JobID,State,ExitCode');
  });

  it('falls back to sacct -c when accounting is off, and remembers it', async () => {
    const { client, calls } = fakeSlurm((file, args) => {
      if (file === 'squeue') throw new SlurmCommandError('squeue failed', 'slurm_load_jobs error: Invalid job id specified');
      if (args.includes('-c')) return '5|TIMEOUT|0:0\n';
      throw new SlurmCommandError('sacct failed', 'Slurm accounting storage is disabled');
    });
    expect((await client.states(['5'])).get('5')?.state).toBe('TIMEOUT');
    expect((await client.states(['5'])).get('5')?.state).toBe('TIMEOUT');
    expect(calls.filter((call) => call.startsWith('sacct'))).toEqual([
      'sacct -X -n -P -j 5 -o JobID,State,ExitCode',
      'sacct -c -n -P -j 5 -o JobID,State,ExitCode',
      'sacct -c -n -P -j 5 -o JobID,State,ExitCode',
    ]);
  });

  it("uses squeue's final state only after sacct has missed the job for several polls", async () => {
    const { client } = fakeSlurm((file) => (file === 'squeue' ? '9|CANCELLED|None\n' : ''));
    const seen: (string | undefined)[] = [];
    for (let poll = 0; poll < 5; poll++) seen.push((await client.states(['9'])).get('9')?.state);
    // SACCT_PATIENCE = 5: unknown for four polls, then squeue's word.
    expect(seen).toEqual([undefined, undefined, undefined, undefined, 'CANCELLED']);
  });

  it('passes other sacct errors on', async () => {
    const { client } = fakeSlurm((file) => {
      if (file === 'squeue') return '';
      throw new SlurmCommandError('sacct failed: connection refused', 'connection refused');
    });
    await expect(client.states(['3'])).rejects.toThrow('connection refused');
  });

  it('submits the script on stdin and cancels by id', async () => {
    const inputs: (string | undefined)[] = [];
    const calls: string[] = [];
    const client = new SlurmClient(async (file, args, stdin) => {
      calls.push(`${file} ${args.join(' ')}`);
      inputs.push(stdin);
      return file === 'sbatch' ? '77\n' : '';
    });
    expect(await client.submit('#!/bin/bash\ntrue\n')).toBe('77');
    await client.cancel(['77', '78']);
    await client.cancel([]);
    expect(calls).toEqual(['sbatch --parsable', 'scancel 77 78']);
    expect(inputs[0]).toBe('#!/bin/bash\ntrue\n');
  });
});
