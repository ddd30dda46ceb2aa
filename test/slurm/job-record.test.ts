import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactStore } from '../../pipeline/store/store.ts';
import { describeSlurmJobs, slurmJobsPath, type SlurmJobsFile } from '../../pipeline/slurm/job-record.ts';
import { SlurmClient } from '../../pipeline/slurm/slurm-client.ts';

let root: string;
beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'slurm-record-'));
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

const job = (jobId: string, state: string, result?: 'succeeded' | 'failed') => ({
  fingerprint: 'f'.repeat(64),
  jobId,
  attempt: 1,
  jobIds: [jobId],
  state,
  ...(result ? { result } : {}),
  afterOk: [],
  stdout: '',
  stderr: '',
  submitted: '2026-01-01T00:00:00Z',
});

async function writeRecord(store: ArtifactStore, jobs: SlurmJobsFile['jobs']): Promise<void> {
  await fs.mkdir(store.runsDir('p'), { recursive: true });
  await fs.writeFile(slurmJobsPath(store, 'p'), JSON.stringify({ updated: '', jobs }));
}

describe('describeSlurmJobs', () => {
  it('asks Slurm only about jobs the record does not show as ended', async () => {
    const store = new ArtifactStore(root);
    await writeRecord(store, { kg: job('11', 'COMPLETED', 'succeeded'), sft: { ...job('13', 'PENDING'), attempt: 2, jobIds: ['12', '13'] } });
    const asked: string[] = [];
    const client = new SlurmClient(async (file, args) => {
      asked.push(`${file} ${args.join(' ')}`);
      return file === 'squeue' ? '13|RUNNING|None\n' : '';
    });
    expect(await describeSlurmJobs(store, 'p', client)).toEqual([
      'kg: job 11 COMPLETED (attempt 1)',
      'sft: job 13 RUNNING (attempt 2, attempts 12, 13)',
    ]);
    expect(asked).toEqual(['squeue -h -t all -j 13 -o %i|%T|%r']);
  });

  it('falls back to the recorded state, saying so, when Slurm cannot be reached', async () => {
    const store = new ArtifactStore(root);
    await writeRecord(store, { sft: job('13', 'RUNNING') });
    const client = new SlurmClient(async () => {
      throw new Error('slurm: squeue not found on PATH; is this a Slurm submit host?');
    });
    expect(await describeSlurmJobs(store, 'p', client)).toEqual([
      'sft: job 13 RUNNING (attempt 1) (recorded state; Slurm not reachable: slurm: squeue not found on PATH; is this a Slurm submit host?)',
    ]);
  });

  it('says nothing for a pipeline that never submitted a job', async () => {
    expect(await describeSlurmJobs(new ArtifactStore(root), 'p', new SlurmClient(async () => ''))).toEqual([]);
  });
});
