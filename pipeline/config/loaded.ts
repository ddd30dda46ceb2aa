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
  /** The stage module, for `uses: ./x.ts` (as written, relative to the config folder). */
  moduleFile?: string;
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
