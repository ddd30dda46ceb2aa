/**
 * Fingerprints (docs/design.md §5): sha256 over the canonical JSON of everything that determines a stage's
 * output. Canonical = object keys sorted recursively, so YAML key order never matters; input
 * fingerprints are sorted, so `needs` order does not matter either. `engine` (the pipeline's
 * `engine:` block) is in every stage's fingerprint, not only model stages': a stage type cannot
 * declare whether it is tensor-dependent, and rebuilding a cheap stage on a backend change costs
 * little while missing a needed rebuild would serve a stale artifact.
 * The stage's name is in it too: a stage's RNG is seeded from (seed, stage name), so two stages
 * that differ only in name produce different outputs and must not share an artifact.
 */
import { createHash } from 'node:crypto';
import type { EngineConfig, Manifest } from './stage-api.ts';

/** A sha256 hex digest naming an artifact. */
export type Fingerprint = string;

export interface FingerprintInput {
  /** The stage's name in the YAML (its RNG stream). */
  stage: string;
  type: string;
  version: string;
  /** Schema-resolved (defaults applied). */
  params: unknown;
  /** Stage name -> fingerprint; only the sorted fingerprints are hashed. */
  inputs: Record<string, Fingerprint>;
  seed: number;
  /** Path as written -> sha256 of the bytes. */
  userFiles: Record<string, string>;
  engine: EngineConfig;
}

export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
        .map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
    );
  }
  return value;
}

export function fingerprintStage(input: FingerprintInput): Fingerprint {
  const hashed = { ...input, inputs: Object.values(input.inputs).sort() };
  return createHash('sha256').update(canonicalJson(hashed)).digest('hex');
}

export function shortFingerprint(fingerprint: Fingerprint): string {
  return fingerprint.slice(0, 8);
}

function show(value: unknown): string {
  return value === undefined ? '(unset)' : typeof value === 'string' ? value : canonicalJson(value);
}

/** `beta 0.1 -> 0.2` for every leaf that differs, with dotted key paths. */
export function diffValues(before: unknown, after: unknown, prefix = ''): string[] {
  const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isMap(before) && isMap(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((key) => diffValues(before[key], after[key], prefix ? `${prefix}.${key}` : key));
  }
  if (canonicalJson(before) === canonicalJson(after)) return [];
  return [`${prefix || '(all)'} ${show(before)} -> ${show(after)}`];
}

/**
 * Why a stage's fingerprint differs from the artifact its ref points at, in words:
 * `params changed: beta 0.1 -> 0.2`, `input dpo changed`, `user file ./stage.ts changed`.
 */
export function explainChange(previous: Manifest, next: FingerprintInput): string[] {
  const reasons: string[] = [];
  if (previous.type !== next.type) reasons.push(`type changed: ${previous.type} -> ${next.type}`);
  else if (previous.version !== next.version) reasons.push(`version changed: ${previous.version} -> ${next.version}`);
  const params = diffValues(previous.params, next.params);
  if (params.length > 0) reasons.push(`params changed: ${params.join(', ')}`);
  const stages = [...new Set([...Object.keys(previous.inputs), ...Object.keys(next.inputs)])].sort();
  for (const stage of stages) {
    const before = previous.inputs[stage];
    const after = next.inputs[stage];
    if (before === undefined) reasons.push(`input ${stage} added`);
    else if (after === undefined) reasons.push(`input ${stage} removed`);
    else if (before !== after) reasons.push(`input ${stage} changed`);
  }
  const files = [...new Set([...Object.keys(previous.userFiles), ...Object.keys(next.userFiles)])].sort();
  for (const file of files) {
    if (previous.userFiles[file] !== next.userFiles[file]) reasons.push(`user file ${file} changed`);
  }
  if (previous.seed !== next.seed) reasons.push(`seed changed: ${previous.seed} -> ${next.seed}`);
  const engine = diffValues(previous.engineConfig, next.engine);
  if (engine.length > 0) reasons.push(`engine changed: ${engine.join(', ')}`);
  // Every fingerprinted field is compared above, so an empty list means the ref's artifact is gone.
  return reasons.length > 0 ? reasons : ['artifact missing from the store'];
}
