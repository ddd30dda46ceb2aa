/**
 * The built artifacts of a pipeline, for commands that use what a run made (`score`, `serve`): each
 * stage's current artifact (its ref) in YAML order, as the `Inputs` a stage would receive. Stages
 * never built are left out; a ref whose object is gone is an error naming it. The config is planned
 * as it is now: taking (`one`, `byStage`) the artifact of a stage whose ref is not what the config
 * plans (its params, code or inputs changed since it was built) is an error naming the stage and the
 * command that builds it, so a command never serves an artifact the config no longer describes.
 */
import { shortFingerprint } from '../fingerprint.ts';
import type { ArtifactKind, EngineConfig, InputArtifact, Inputs } from '../stage-api.ts';
import { loadOrThrow, planOrThrow, storeFor, type CommandIo, type ConfigOptions } from './common.ts';

export interface BuiltArtifacts extends Inputs {
  pipeline: string;
  /** Every stage of the config, built or not, in YAML order. */
  stages: string[];
  /** The store's root folder. */
  storeRoot: string;
  /** The pipeline's `engine:` block. */
  engine: EngineConfig;
  /** The store's objects folder (artifacts may name each other by fingerprint). */
  objectDir(fingerprint: string): string;
}

export async function builtArtifacts(configPath: string, options: ConfigOptions, io: CommandIo): Promise<BuiltArtifacts> {
  const loaded = await loadOrThrow(configPath, options, io);
  const store = storeFor(loaded, options, io);
  const all: InputArtifact[] = [];
  for (const stage of loaded.stages.keys()) {
    const fingerprint = await store.readRef(loaded.config.name, stage);
    if (fingerprint === undefined) continue;
    const manifest = await store.readManifest(fingerprint);
    if (!manifest) throw new Error(`${store.objectDir(fingerprint)}: the artifact that ${loaded.config.name}/${stage} refers to is missing (run \`pipeline run ${configPath}\`)`);
    all.push({ stage, kind: manifest.kind, fingerprint, dir: store.objectDir(fingerprint), manifest });
  }
  const plan = await planOrThrow(loaded, store, {});
  const outOfDate = new Map<string, string>();
  for (const stage of plan.stages) {
    if (stage.decision.action !== 'run' || stage.previous === undefined) continue;
    outOfDate.set(
      stage.name,
      `${loaded.config.name}/${stage.name} is out of date: the config now plans ${shortFingerprint(stage.fingerprint)}, the store's ref is ${shortFingerprint(stage.previous)} (${stage.decision.reasons.join('; ')}); build it with \`pipeline run ${configPath} --until ${stage.name}\``,
    );
  }
  const current = (artifact: InputArtifact | undefined) => {
    const stale = artifact && outOfDate.get(artifact.stage);
    if (stale) throw new Error(stale);
    return artifact;
  };
  const many = (kind: ArtifactKind) => all.filter((a) => a.kind === kind);
  return {
    pipeline: loaded.config.name,
    stages: [...loaded.stages.keys()],
    storeRoot: store.root,
    engine: loaded.config.engine as EngineConfig,
    objectDir: (fingerprint) => store.objectDir(fingerprint),
    all,
    many,
    one(kind) {
      const found = many(kind);
      if (found.length === 1) return current(found[0]) as InputArtifact;
      throw new Error(
        found.length === 0
          ? `${loaded.config.name} has no built ${kind} artifact (run \`pipeline run ${configPath}\` first)`
          : `${loaded.config.name} has ${found.length} ${kind} artifacts (${found.map((a) => a.stage).join(', ')}): name one`,
      );
    },
    byStage: (stage) => current(all.find((a) => a.stage === stage)),
  };
}
