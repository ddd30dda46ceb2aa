/**
 * The commands that belong to stages: they use what stages built (a judge checkpoint, a deployment)
 * and so live beside them, not in the orchestrator. bin/pipeline.js hands them to `main`. Each loads
 * its implementation (the engine, onnxruntime, Fastify) only when it runs, so `pipeline --help` and
 * `pipeline plan` never pay for them; what they need from the orchestrator at start-up comes in the
 * kit, so this module loads nothing but commander's Option.
 */
import { cp, mkdir, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import type { StageCommand } from '../pipeline/api.ts';

export const scoreCommand: StageCommand = (program, { io, setExit, withConfigOptions, reportingErrors, builtArtifacts, parse: { positiveInt, stageList, unitInterval } }) => {
  withConfigOptions(program.command('score').argument('<config>', 'pipeline YAML (its built judge, knowledge graph and prompts)'))
    .description('label query–item pairs with the trained judge: grade, per-grade probabilities, reasoning (resumable)')
    .requiredOption('--input <file>', 'JSONL of {id?, query, item: {title, category?, attributes?, ...}}')
    .requiredOption('--output <file>', 'JSONL written when every pair is scored (<output>.partial until then)')
    .option('--model <stage>', 'the checkpoint stage to judge with (default: the last one built)')
    .option('--batch-size <n>', 'pairs decoded at once', positiveInt, 8)
    .option('--max-new-tokens <n>', 'generation budget per pair', positiveInt, 160)
    .addOption(new Option('--grade <reading>', "a think-first judge's grade: the answer it wrote, or the median of its answer probabilities after its reasoning (as eval's grade: median)").choices(['answer', 'median']).default('answer'))
    .option('--lexical-pool <weight>', "pool the judge's grade probabilities with the learned lexical baseline's (fitted on train), this weight on the baseline, and read the pooled median (as eval's lexical_pool)", unitInterval)
    .option('--ensemble <stages>', "further checkpoint stages, comma-separated, judging with --model as one (as eval's ensemble): the median of their grade probabilities' geometric mean", stageList)
    .option('--delivered [eval-stage]', "serve the judge the eval stage delivered (members, lexical pool weight and decision rule chosen on dev; its metrics.json `delivered`); name the eval stage when there are several")
    .action(
      reportingErrors(async (config: string, flags) => {
        const { scorePairs } = await import('./lib/serving/score.ts');
        const artifacts = await builtArtifacts(config, flags);
        setExit(await scorePairs(artifacts, { ...flags, input: path.resolve(io.cwd, flags.input), output: path.resolve(io.cwd, flags.output) }, { ...io, isTTY: process.stderr.isTTY === true }));
      }),
    );
};

export const serveCommand: StageCommand = (program, { io, setExit, withConfigOptions, reportingErrors, builtArtifacts, parse: { positiveInt } }) => {
  withConfigOptions(program.command('serve').argument('<config>', 'pipeline YAML (its built deployment: a precompute stage)'))
    .description('serve the judge over HTTP: head cache, distilled model, LLM (POST /v1/relevance, OpenAI-compatible /v1/chat/completions)')
    .option('--stage <name>', 'the deployment (precompute) stage to serve (default: the only one)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', (v) => (v === '0' ? 0 : positiveInt(v)), 8080)
    .option('--body-limit <bytes>', 'largest request body (413 beyond)', positiveInt, 1_048_576)
    .option('--max-items <n>', 'most items in one relevance request', positiveInt, 256)
    .option('--embeddings <embed-stage>', 'also answer POST /v1/embeddings (OpenAI shape) with this embed stage’s trained decoder')
    .option('--search <index-stage>', 'also answer POST /v1/search: BM25 over this index stage’s catalog, the results judged by the tiers')
    .option('--rewriter <rewrite-stage>', 'rewrite /v1/search’s long-tail queries (tail or new) with this rewrite stage’s rewriter')
    .option('--max-k <n>', 'most items one /v1/search request may ask for (default: --max-items)', positiveInt)
    .option('--memo-entries <n>', 'head-cache entries kept parsed in memory (past it, the first in goes)', positiveInt, 50_000)
    .addOption(new Option('--log-level <level>', 'JSON logs on stdout').choices(['silent', 'error', 'warn', 'info', 'debug']).default('info'))
    .option('--access-log', 'one log line per request (off by default: /metrics counts them)', false)
    .addOption(new Option('--api-key <key>', 'require Authorization: Bearer <key> on /v1 routes (401 otherwise)').env('LORE_API_KEY'))
    .option('--min-confidence <x>', "override the deployment's routing threshold (0-1; above 1: every uncached pair of --llm-tiers to the LLM)", (v) => {
      const x = Number(v);
      if (!(x >= 0 && x <= 1.01)) throw new InvalidArgumentError('expected a number from 0 to 1.01');
      return x;
    })
    .option('--llm-tiers <tiers>', "override the deployment's query tiers that may reach the LLM (comma-separated: new,tail,torso,head)", (v) => {
      const tiers = v.split(',').map((t) => t.trim());
      const bad = tiers.find((t) => !['new', 'tail', 'torso', 'head'].includes(t));
      if (bad !== undefined) throw new InvalidArgumentError(`${bad}: expected new, tail, torso or head`);
      return tiers;
    })
    .action(
      reportingErrors(async (config: string, flags) => {
        const { serveCommand: serve } = await import('./lib/serving/serve-command.ts');
        const artifacts = await builtArtifacts(config, flags);
        setExit(await serve(artifacts, { ...flags, logger: flags.logLevel === 'silent' ? false : { level: flags.logLevel } }, io));
      }),
    );
};

/**
 * `pipeline export <config> <stage>`: the stage's current checkpoint artifact as a folder that ONNX
 * Runtime and `@huggingface/transformers` load: the checkpoint's files plus `onnx/model.onnx`.
 * Artifacts in the store are immutable (their manifest lists every file's hash), so the export goes
 * to its own folder, written aside and renamed into place: never a partial folder.
 */
export const exportCommand: StageCommand = (program, { io, setExit, withConfigOptions, reportingErrors, builtArtifacts, exit: EXIT }) => {
  withConfigOptions(program.command('export').argument('<config>', 'pipeline YAML').argument('<stage>', 'a stage whose artifact is a checkpoint'))
    .description("copy the stage's checkpoint with an ONNX export (onnx/model.onnx) that onnxruntime and transformers.js load")
    .option('--out <dir>', 'where to write it (default: <store>/exports/<pipeline>/<stage>)')
    .action(
      reportingErrors(async (configPath: string, stage: string, flags) => {
        const artifacts = await builtArtifacts(configPath, flags);
        if (!artifacts.stages.includes(stage)) {
          io.err(`error: ${configPath} has no stage "${stage}" (stages: ${artifacts.stages.join(', ')})`);
          return setExit(EXIT.usage);
        }
        const artifact = artifacts.byStage(stage);
        if (!artifact) {
          io.err(`error: ${stage} has no artifact in ${artifacts.storeRoot}: run \`pipeline run ${configPath} --until ${stage}\` first`);
          return setExit(EXIT.usage);
        }
        if (artifact.kind !== 'checkpoint') {
          io.err(`error: ${stage} produces ${artifact.kind}, not a checkpoint: only model checkpoints export to ONNX`);
          return setExit(EXIT.usage);
        }
        const out = flags.out ? path.resolve(io.cwd, flags.out) : path.join(artifacts.storeRoot, 'exports', artifacts.pipeline, stage);
        const staging = `${out}.partial-${process.pid}`;
        const started = performance.now();
        const [{ makeWritable, MANIFEST, shortFingerprint }, engine, onnx] = await Promise.all([import('../pipeline/api.ts'), import('#engine'), import('#engine/onnx')]);
        await engine.initEngine(artifacts.engine);
        await rm(staging, { recursive: true, force: true });
        await mkdir(path.dirname(out), { recursive: true });
        try {
          await cp(artifact.dir, staging, { recursive: true, filter: (file) => path.basename(file) !== MANIFEST });
          // The copy keeps the published object's read-only folders: the export writes onnx/ into it.
          await makeWritable(staging);
          const modelPath = await onnx.exportCheckpoint(staging);
          await rm(out, { recursive: true, force: true });
          await rename(staging, out);
          io.out(`${stage} (${shortFingerprint(artifact.fingerprint)}) -> ${path.join(out, path.relative(staging, modelPath))} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
          setExit(EXIT.ok);
        } catch (error) {
          await rm(staging, { recursive: true, force: true });
          throw error;
        }
      }),
    );
};

/** In the order `pipeline --help` lists them. */
export const stageCommands: readonly StageCommand[] = [scoreCommand, serveCommand, exportCommand];
