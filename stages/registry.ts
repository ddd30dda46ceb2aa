/** Built-in stage types, by the name used in YAML `uses:`. Append one import and one entry per type. */
import type { StageType } from '../pipeline/stage-api.ts';
import { execStage } from './exec/index.ts';

export const builtinStages: StageType[] = [
  execStage,
];
