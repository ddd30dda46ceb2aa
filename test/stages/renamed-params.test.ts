/**
 * The trainer stages' keys before they shared one vocabulary (stages/lib/judge/training-params.ts)
 * still load for one release: `lr` (pretrain, sft), `eval_generate` (sft) and dpo's
 * `max_completion_length` are read as `learning_rate`, `eval_prompts` and `max_new_tokens`, with a
 * warning at the old key that names the new one. A config in the wild keeps running, and moving it
 * to the new names changes no fingerprint (nothing reruns).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inProcess, workspaces } from '../pipeline/cli-helpers.ts';

const workspace = workspaces();

const TINY_MODEL = '{ hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }';

/** A tiny chain whose trainers write the learning rate, the probe size and dpo's probe budget under `names`. */
function config(names: { lr: string; evalPrompts: string; dpoBudget: string }): string {
  return `name: renamed
seed: 3
store: ./store
engine: { backend: auto, data_parallel: 1 }
stages:
  world: { uses: world, with: { queries: 16, itemsPerType: 2, candidates: 4 } }
  kg: { uses: kg, needs: [world] }
  icl: { uses: icl, needs: [world, kg], with: { facts: 0, shots: 0, rules: none } }
  cot: { uses: cot, needs: [icl, kg] }
  pretrain:
    uses: pretrain
    needs: [world, cot]
    with: { vocab_size: 320, model: ${TINY_MODEL}, block_size: 32, batch_size: 8, epochs: 0.05, ${names.lr}: 0.005 }
  sft:
    uses: sft
    needs: [cot, icl, pretrain]
    with:
      drop_system_prompt: true
      max_steps: 2
      batch_size: 8
      ${names.lr}: 0.004
      ${names.evalPrompts}: 2
      max_new_tokens: 8
  sample:
    uses: sample
    needs: [sft, icl, kg]
    with: { num_generations: 2, max_completion_length: 8, limit: 4 }
  dpo:
    uses: dpo
    needs: [sample, sft, cot, icl]
    with: { max_steps: 1, batch_size: 2, eval_prompts: 2, ${names.dpoBudget}: 6 }
`;
}

const OLD = { lr: 'lr', evalPrompts: 'eval_generate', dpoBudget: 'max_completion_length' };
const NEW = { lr: 'learning_rate', evalPrompts: 'eval_prompts', dpoBudget: 'max_new_tokens' };

/** 1-based `line:col` of the only occurrence of `needle` in `text`. */
function lineCol(text: string, needle: string): string {
  const at = text.indexOf(needle);
  if (at < 0 || text.indexOf(needle, at + 1) >= 0) throw new Error(`expected one ${needle} in the config`);
  const before = text.slice(0, at).split('\n');
  return `${before.length}:${(before.at(-1) as string).length + 1}`;
}

function manifestParams(dir: string, stage: string): Record<string, unknown> {
  const objects = path.join(dir, 'store', 'objects');
  for (const d of readdirSync(objects)) {
    const manifest = JSON.parse(readFileSync(path.join(objects, d, 'manifest.json'), 'utf8')) as { stage: string; params: Record<string, unknown> };
    if (manifest.stage === stage) return manifest.params;
  }
  throw new Error(`no artifact of ${stage}`);
}

describe('renamed trainer keys', () => {
  it('an old-name config warns at each old key, naming the new one, and runs as the new names would', async () => {
    const dir = workspace('renamed-');
    const pipeline = inProcess(dir);
    writeFileSync(path.join(dir, 'old.yaml'), config(OLD));

    const validated = await pipeline('validate', 'old.yaml');
    expect(validated.code).toBe(0);
    // Each warning points at the old key where config(OLD) writes it (found in the text by the
    // value written after it): pretrain's flow map, sft's block map, dpo's flow map.
    const warning = (written: string, stage: string, key: string, renamed: string) =>
      `old.yaml:${lineCol(config(OLD), `${key}: ${written}`)}: warning: stages.${stage}.with: "${key}" is renamed "${renamed}"; the old name still works in this release but will be removed: write "${renamed}"`;
    expect(validated.err).toContain(warning('0.005', 'pretrain', 'lr', 'learning_rate'));
    expect(validated.err).toContain(warning('0.004', 'sft', 'lr', 'learning_rate'));
    expect(validated.err).toContain(warning('2', 'sft', 'eval_generate', 'eval_prompts'));
    expect(validated.err).toContain(warning('6', 'dpo', 'max_completion_length', 'max_new_tokens'));
    expect(validated.err).toMatch(/\n4 warnings$/);

    const ran = await pipeline('run', 'old.yaml');
    expect(ran.out).toMatch(/succeeded: 8 built, 0 cached, 0 failed/);
    expect(ran.err).toContain(warning('0.004', 'sft', 'lr', 'learning_rate'));
    // The values written under the old names are the settings the stages ran with.
    expect(manifestParams(dir, 'pretrain')).toMatchObject({ learning_rate: 0.005 });
    expect(manifestParams(dir, 'sft')).toMatchObject({ learning_rate: 0.004, eval_prompts: 2 });
    expect(manifestParams(dir, 'sft')).not.toHaveProperty('lr');
    expect(manifestParams(dir, 'dpo')).toMatchObject({ max_new_tokens: 6 });
    expect(manifestParams(dir, 'dpo')).not.toHaveProperty('max_completion_length');

    // The same config in the new names is the same pipeline: every stage is cached, nothing warns.
    writeFileSync(path.join(dir, 'new.yaml'), config(NEW));
    const again = await pipeline('run', 'new.yaml');
    expect(again.out).toMatch(/succeeded: 0 built, 8 cached, 0 failed/);
    expect(again.err).not.toContain('warning');
  }, 300_000);

  it('`pipeline stages` lists each old name under its stage with the new key', async () => {
    const stages = (await inProcess(workspace('renamed-stages-'))('stages')).out;
    // A stage's lines: its header, then its indented params.
    const lines = stages.split('\n');
    const section = (name: string) => {
      const start = lines.findIndex((l) => l.startsWith(`${name} (v`));
      const end = lines.findIndex((l, i) => i > start && !l.startsWith('  '));
      return lines.slice(start + 1, end < 0 ? undefined : end);
    };
    const note = (oldKey: string, newKey: string) => `  ${oldKey}: renamed ${newKey} (the old name still loads, with a warning)`;
    expect(section('sft')).toEqual(expect.arrayContaining([note('lr', 'learning_rate'), note('eval_generate', 'eval_prompts')]));
    expect(section('pretrain')).toContain(note('lr', 'learning_rate'));
    expect(section('dpo')).toContain(note('max_completion_length', 'max_new_tokens'));
    expect(section('grpo')).not.toContain(note('max_completion_length', 'max_new_tokens'));
  });

  it('a stage that writes both the old and the new name is an error at the old key', async () => {
    const dir = workspace('renamed-both-');
    const pipeline = inProcess(dir);
    writeFileSync(path.join(dir, 'both.yaml'), config(NEW).replace('      learning_rate: 0.004\n', '      learning_rate: 0.004\n      lr: 0.001\n'));
    const validated = await pipeline('validate', 'both.yaml');
    expect(validated.code).toBe(2);
    expect(validated.err).toContain(`both.yaml:${lineCol(readFileSync(path.join(dir, 'both.yaml'), 'utf8'), 'lr: 0.001')}: error: stages.sft.with: "lr" is the old name of "learning_rate", which is also given: keep "learning_rate" only`);
    expect(validated.err).toMatch(/\n1 error$/);
  });

  it("an old key's bad value is reported at the old key, as written", async () => {
    const dir = workspace('renamed-bad-');
    const pipeline = inProcess(dir);
    const text = config(OLD).replace('      lr: 0.004\n', '      lr: -1\n');
    writeFileSync(path.join(dir, 'bad.yaml'), text);
    const validated = await pipeline('validate', 'bad.yaml');
    expect(validated.code).toBe(2);
    const [line, col] = lineCol(text, 'lr: -1').split(':').map(Number) as [number, number];
    // The value's position: after "lr: ".
    expect(validated.err).toContain(`bad.yaml:${line}:${col + 4}: error: stages.sft.with.lr: expected a number > 0, found integer -1`);
    expect(validated.err).toMatch(/\n1 error, 4 warnings$/);
  });
});
