/**
 * What loading a config gives (load.ts), apart from the loader so the checks it runs
 * (stage-checks.ts) can name these types without importing it.
 */
import type { StageType } from '../stage-api.ts';
import type { YamlSource } from './locate.ts';
import type { PipelineConfig } from './schema.ts';

export interface LoadedStage {
  name: string;
  type: StageType;
  /** Params after the type's schema: defaults applied. */
  params: unknown;
  /** For `uses: ./x.ts`: its module, and whether it was imported (only `run` imports it). */
  userStage?: UserStageSource;
}

export interface UserStageSource {
  /** The module as written, relative to the config folder. */
  file: string;
  /**
   * False for read-only commands: `type` is then a stand-in (describeUserStage), `params` is
   * `written`, and the stage's own checks have not run.
   */
  imported: boolean;
  /**
   * `with:` as written (after --set). A user stage's fingerprint takes its params as written, not
   * after its schema's defaults, so that commands that do not run the file fingerprint it as `run` does.
   */
  written: unknown;
}

export interface LoadedConfig {
  /** Absolute path of the YAML file, and its folder (user paths resolve against it). */
  file: string;
  dir: string;
  source: YamlSource;
  config: PipelineConfig;
  /** YAML order. */
  stages: Map<string, LoadedStage>;
  overrides: readonly string[];
}
