/** Built-in stage types, by the name used in YAML `uses:`. Append one import and one entry per type. */
import type { StageType } from '../pipeline/api.ts';
import { execStage } from './exec/index.ts';
import worldStage from './world/index.ts';
import importStage from './import/index.ts';
import kgStage from './kg/index.ts';
import iclStage from './icl/index.ts';
import cotStage from './cot/index.ts';
import sftStage from './sft/index.ts';
import sampleStage from './sample/index.ts';
import dpoStage from './dpo/index.ts';
import grpoStage from './grpo/index.ts';
import evalStage from './eval/index.ts';
import pretrainStage from './pretrain/index.ts';
import distillStage from './distill/index.ts';
import precomputeStage from './precompute/index.ts';
import embedStage from './embed/index.ts';
import indexStage from './index/index.ts';
import retrieveStage from './retrieve/index.ts';
import evalRetrievalStage from './eval-retrieval/index.ts';
import rewriteStage from './rewrite/index.ts';

export const builtinStages: StageType[] = [
  execStage,
  worldStage,
  importStage,
  kgStage,
  iclStage,
  cotStage,
  sftStage,
  evalStage,
  sampleStage,
  dpoStage,
  grpoStage,
  pretrainStage,
  distillStage,
  precomputeStage,
  embedStage,
  indexStage,
  retrieveStage,
  evalRetrievalStage,
  rewriteStage,
];
