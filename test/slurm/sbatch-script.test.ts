import { describe, expect, it } from 'vitest';
import { renderSbatchScript, type SbatchJob } from '../../pipeline/slurm/sbatch-script.ts';

const base: SbatchJob = {
  name: 'lore.sft',
  slurm: { time: '01:00:00', cpus: 1, mem: '2G', gpus: 0, extra_args: [], retries: 0, retry_on: [], poll_s: 1 },
  command: ['/usr/bin/node', '/repo/bin/pipeline.js', 'run-stage', '/cfg/my lore.yaml', 'sft'],
  workDir: '/repo',
  stdoutPath: '/store/logs/lore/slurm/sft.%j.out',
  stderrPath: '/store/logs/lore/slurm/sft.%j.err',
  afterOk: [],
  env: { PATH: '/usr/bin:/bin' },
};

function sbatchLines(script: string): string[] {
  return script.split('\n').filter((line) => line.startsWith('#SBATCH '));
}

describe('renderSbatchScript', () => {
  it('renders resources, logs and --parsable, and execs the command with quoted arguments', () => {
    expect(renderSbatchScript(base)).toBe(
      [
        '#!/bin/bash',
        '#SBATCH --job-name=lore.sft',
        '#SBATCH --parsable',
        '#SBATCH --time=01:00:00',
        '#SBATCH --cpus-per-task=1',
        '#SBATCH --mem=2G',
        '#SBATCH --chdir=/repo',
        '#SBATCH --output=/store/logs/lore/slurm/sft.%j.out',
        '#SBATCH --error=/store/logs/lore/slurm/sft.%j.err',
        'set -euo pipefail',
        // shell-quote escapes ":" (harmless: bash reads `\:` as `:`).
        'export PATH=/usr/bin\\:/bin',
        // The path with a space is one shell word.
        "exec /usr/bin/node /repo/bin/pipeline.js run-stage '/cfg/my lore.yaml' sft",
        '',
      ].join('\n'),
    );
  });

  it('adds partition, account, GPUs, dependencies and extra arguments when set', () => {
    const lines = sbatchLines(
      renderSbatchScript({
        ...base,
        slurm: { ...base.slurm, partition: 'gpu', account: 'search', gpus: 2, extra_args: ['--qos', 'high', '--exclusive'] },
        afterOk: ['101', '102'],
      }),
    );
    expect(lines).toContain('#SBATCH --partition=gpu');
    expect(lines).toContain('#SBATCH --account=search');
    expect(lines).toContain('#SBATCH --gres=gpu:2');
    expect(lines).toContain('#SBATCH --dependency=afterok:101:102');
    expect(lines).toContain('#SBATCH --kill-on-invalid-dep=yes');
    // "--qos" takes the next word as its value, as on sbatch's command line.
    expect(lines.slice(-2)).toEqual(['#SBATCH --qos high', '#SBATCH --exclusive']);
  });

  it('asks for no GPU and no dependency when there is none', () => {
    const text = renderSbatchScript(base);
    expect(text).not.toContain('--gres');
    expect(text).not.toContain('--dependency');
  });

  it('double-quotes option values with spaces and rejects values sbatch cannot read', () => {
    expect(sbatchLines(renderSbatchScript({ ...base, workDir: '/my repo' }))).toContain('#SBATCH --chdir="/my repo"');
    expect(() => renderSbatchScript({ ...base, name: 'a\nb' })).toThrow(/contains a newline or a double quote/);
  });

  it('rejects an extra argument that is not an option', () => {
    expect(() => renderSbatchScript({ ...base, slurm: { ...base.slurm, extra_args: ['exclusive'] } })).toThrow(
      'slurm.extra_args[0]: "exclusive" is not an sbatch option (options start with "-")',
    );
  });
});
