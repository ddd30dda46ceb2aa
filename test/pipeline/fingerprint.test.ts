import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { canonicalJson, diffValues, explainChange, fingerprintStage, type FingerprintInput } from '../../pipeline/fingerprint.ts';
import type { Manifest } from '../../pipeline/stage-api.ts';

const base: FingerprintInput = {
  stage: 'dpo',
  type: 'dpo',
  version: '1',
  params: { beta: 0.1, opt: { lr: 0.001, betas: [0.9, 0.99] } },
  inputs: { sft: 'f'.repeat(64), icl: 'e'.repeat(64) },
  seed: 13,
  userFiles: { './reward.ts': 'a'.repeat(64) },
  engine: { backend: 'auto' },
};

describe('canonicalJson', () => {
  it('sorts keys at every depth, keeps array order, drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, 1], c: undefined, b: null } })).toBe('{"a":{"b":null,"d":[2,1]},"b":1}');
  });
});

describe('fingerprintStage', () => {
  it('is sha256 of the canonical JSON with the input fingerprints sorted', () => {
    // By the definition in docs/design.md §5: inputs hashed as a sorted list, not by stage name.
    const expected = createHash('sha256')
      .update(canonicalJson({ ...base, inputs: ['e'.repeat(64), 'f'.repeat(64)] }))
      .digest('hex');
    expect(fingerprintStage(base)).toBe(expected);
  });

  it('does not depend on key order or on the order of needs', () => {
    const reordered: FingerprintInput = {
      engine: { backend: 'auto' },
      userFiles: { './reward.ts': 'a'.repeat(64) },
      seed: 13,
      inputs: { icl: 'e'.repeat(64), sft: 'f'.repeat(64) },
      params: { opt: { betas: [0.9, 0.99], lr: 0.001 }, beta: 0.1 },
      version: '1',
      type: 'dpo',
      stage: 'dpo',
    };
    expect(fingerprintStage(reordered)).toBe(fingerprintStage(base));
  });

  it('changes with each thing that determines the output', () => {
    const variants: Partial<FingerprintInput>[] = [
      { stage: 'dpo2' }, // its RNG stream differs
      { type: 'grpo' },
      { version: '2' },
      { params: { ...(base.params as object), beta: 0.2 } },
      { params: { beta: 0.1, opt: { lr: 0.001, betas: [0.99, 0.9] } } }, // list order is data
      { inputs: { ...base.inputs, sft: 'd'.repeat(64) } },
      { seed: 14 },
      { userFiles: { './reward.ts': 'b'.repeat(64) } },
      { engine: { backend: 'wasm' } },
    ];
    const prints = variants.map((change) => fingerprintStage({ ...base, ...change }));
    expect(new Set([fingerprintStage(base), ...prints]).size).toBe(variants.length + 1);
  });
});

describe('explainChange', () => {
  const manifest = (input: FingerprintInput): Manifest => ({
    fingerprint: fingerprintStage(input),
    pipeline: 'p',
    stage: 'dpo',
    type: input.type,
    kind: 'checkpoint',
    version: input.version,
    params: input.params,
    inputs: input.inputs,
    userFiles: input.userFiles,
    seed: input.seed,
    engineConfig: input.engine,
    created: '2026-01-01T00:00:00.000Z',
    durationS: 1,
    metrics: {},
    files: {},
  });

  it('names every changed param by key path, with old and new values', () => {
    const next = { ...base, params: { beta: 0.2, opt: { lr: 0.0003, betas: [0.9, 0.99] } } };
    expect(explainChange(manifest(base), next)).toEqual(['params changed: beta 0.1 -> 0.2, opt.lr 0.001 -> 0.0003']);
  });

  it('names changed inputs, user files, seed and engine', () => {
    const next: FingerprintInput = {
      ...base,
      inputs: { sft: 'd'.repeat(64) },
      userFiles: { './reward.ts': 'b'.repeat(64) },
      seed: 1,
      engine: { backend: 'wasm' },
    };
    expect(explainChange(manifest(base), next)).toEqual([
      'input icl removed',
      'input sft changed',
      'user file ./reward.ts changed',
      'seed changed: 13 -> 1',
      'engine changed: backend auto -> wasm',
    ]);
  });

  it('reports a version bump, and an unchanged config as a missing artifact', () => {
    expect(explainChange(manifest(base), { ...base, version: '2' })).toEqual(['version changed: 1 -> 2']);
    expect(explainChange(manifest(base), base)).toEqual(['artifact missing from the store']);
  });
});

describe('diffValues', () => {
  it('reports added and removed keys', () => {
    expect(diffValues({ a: 1 }, { b: 2 })).toEqual(['a 1 -> (unset)', 'b (unset) -> 2']);
  });
});
