/**
 * The `pipeline` command line. Exit codes: 0 success, 1 a stage failed (or the store was busy with
 * --no-wait), 2 bad usage or config, 130 the run was stopped (SIGINT/SIGTERM).
 */
import * as path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DiagnosticsError } from './diagnostics.ts';
import { describeDecision } from './plan.ts';
import { runStageInProcess } from './executor/run-stage.ts';
import { acquireStoreLock, describeHolder, LockBusyError } from './store/lock.ts';
import { BrokenJsonError, DiskFullError } from './store/fs-util.ts';
import { StoreError } from './store/store.ts';
import { EXIT, loadOrThrow, planOrThrow, printDiagnostics, processIo, splitList, storeFor, type Io } from './commands/common.ts';
import { exportCommand } from './commands/export.ts';
import { gcCommand } from './commands/gc.ts';
import { lsCommand, showCommand, statusCommand } from './commands/inspect.ts';
import { runCommand } from './commands/run.ts';
import { stagesCommand } from './commands/stages.ts';
import { verifyCommand } from './commands/verify.ts';
import { reportCommand } from './report/command.ts';

const collect = (value: string, previous: string[] = []) => [...previous, value];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number >= 1');
  return n;
}

function stageList(value: string): string[] {
  const stages = value.split(',').map((s) => s.trim());
  if (stages.some((s) => s === '')) throw new InvalidArgumentError(`expected stage names separated by commas, got "${value}"`);
  return stages;
}

function unitInterval(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !(n >= 0 && n <= 1)) throw new InvalidArgumentError('expected a number from 0 to 1');
  return n;
}

function withConfigOptions(command: Command): Command {
  return command
    .option('--store <dir>', "artifact store (default: the config's `store:`, relative to the config file)")
    .option('--set <key=value>', 'override a config value, e.g. stages.sft.with.lr=3e-4 (repeatable)', collect);
}

function withSelection(command: Command): Command {
  return command
    .option('--only <stages>', 'only these stages (comma-separated); their inputs come from the store')
    .option('--from <stage>', 'this stage and everything downstream of it')
    .option('--until <stage>', 'this stage and everything upstream of it')
    .option('--force <stage>', 'rebuild this stage even if cached (repeatable)', collect);
}

interface SelectionFlags {
  only?: string;
  from?: string;
  until?: string;
  force?: string[];
}

const selection = (flags: SelectionFlags) => ({ only: splitList(flags.only), from: flags.from, until: flags.until });

/** An action whose failures (a missing file, a corrupt model) print `error: ...` and exit 1; config errors keep their diagnostics. */
function reportingErrors<A extends unknown[]>(io: Io, setExit: (code: number) => void, action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      if (error instanceof DiagnosticsError) throw error;
      io.err(`error: ${(error as Error).message}`);
      setExit(EXIT.failed);
    }
  };
}

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command('pipeline')
    .description('Train LLM search-relevance judges end to end from one YAML DAG.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showHelpAfterError();

  withSelection(withConfigOptions(program.command('run').argument('<config>', 'pipeline YAML')))
    .description('build what is out of date')
    .option('--concurrency <n>', 'most stages running at once (default: CPU count)', positiveInt)
    .addOption(new Option('--on-error <mode>', 'after a stage fails').choices(['fail', 'keep-going']).default('fail'))
    .option('--no-wait', 'fail at once if another run holds the store lock')
    .option('--strict', 'exit 1 (after publishing) when a stage reports a failed quality check, e.g. a degenerate judge')
    .option('--break-lock', 'take the store lock even from a holder that looks alive (one known to be dead: a lost container)')
    .addOption(new Option('--executor <name>', "the top-level `executor:` (stages with their own keep it); same as --set executor=NAME").choices(['local', 'slurm']))
    .action(async (config: string, flags) => {
      const set = [...(flags.set ?? []), ...(flags.executor ? [`executor=${flags.executor}`] : [])];
      setExit(await runCommand(config, { ...flags, set, selection: selection(flags), force: flags.force ?? [], onError: flags.onError }, io));
    });

  withSelection(withConfigOptions(program.command('plan').argument('<config>', 'pipeline YAML')))
    .description('say what `run` would do and why, without running')
    .action(async (config: string, flags) => {
      const loaded = await loadOrThrow(config, flags, io);
      const plan = await planOrThrow(loaded, storeFor(loaded, flags, io), { selection: selection(flags), force: flags.force });
      for (const stage of plan.stages) io.out(describeDecision(stage));
      setExit(EXIT.ok);
    });

  withConfigOptions(program.command('validate').argument('<config>', 'pipeline YAML'))
    .description('check the config and report every problem')
    .action(async (config: string, flags) => {
      const loaded = await loadOrThrow(config, flags, io);
      io.out(`${config}: ok, pipeline ${loaded.config.name}, ${loaded.stages.size} stages`);
      setExit(EXIT.ok);
    });

  for (const name of ['status', 'ls'] as const) {
    withConfigOptions(program.command(name).argument('<config>', 'pipeline YAML'))
      .description(name === 'status' ? 'each stage: up to date or not, and its last run' : 'the current artifact of each stage')
      .option('--json', 'print JSON')
      .action(async (config: string, flags) => setExit(await (name === 'status' ? statusCommand : lsCommand)(config, flags, io)));
  }

  withConfigOptions(program.command('show').argument('<config>', 'pipeline YAML').argument('<what>', 'a stage name or a fingerprint prefix'))
    .description("an artifact's manifest and files")
    .option('--json', 'print JSON')
    .action(async (config: string, what: string, flags) => setExit(await showCommand(config, what, flags, io)));

  withConfigOptions(program.command('gc').argument('<config>', 'pipeline YAML (names the store)'))
    .description('delete artifacts no ref points at and the config does not plan, and work folders no run would resume from')
    .option('--dry-run', 'list what would be deleted')
    .option('--resumable', 'also delete work folders a run would resume from (step checkpoints, of any pipeline)')
    .option('--clear-cache <name>', "also delete this named cache under the store's work/ (e.g. teacher-cache: paid-for teacher answers; repeatable)", collect)
    .option('--break-lock', 'take the store lock even from a holder that looks alive')
    .action(async (config: string, flags) => setExit(await gcCommand(config, flags, io)));

  withConfigOptions(program.command('verify').argument('<config>', 'pipeline YAML (names the store)'))
    .description("re-hash every artifact in the store against its manifest; name what is damaged (--repair removes it, so the next run rebuilds it)")
    .option('--repair', 'remove damaged artifacts and what interrupted commands left (trash, .tmp- files)')
    .option('--json', 'print JSON')
    .option('--break-lock', 'take the store lock even from a holder that looks alive')
    .action(async (config: string, flags) => setExit(await verifyCommand(config, flags, io)));

  withConfigOptions(program.command('report').argument('<config>', 'pipeline YAML'))
    .description('write one self-contained HTML report: the DAG, curves, metrics and stage report fragments')
    .option('--out <file>', 'where to write it (default: <store>/reports/<pipeline>.html)')
    .action(async (config: string, flags) => setExit(await reportCommand(config, flags, io)));

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
      reportingErrors(io, setExit, async (config: string, flags) => {
        const { builtArtifacts } = await import('./commands/artifacts.ts');
        const { scorePairs } = await import('../stages/lib/serving/score.ts');
        const artifacts = await builtArtifacts(config, flags, io);
        setExit(await scorePairs(artifacts, { ...flags, input: path.resolve(io.cwd, flags.input), output: path.resolve(io.cwd, flags.output) }, { ...io, isTTY: process.stderr.isTTY === true }));
      }),
    );

  withConfigOptions(program.command('serve').argument('<config>', 'pipeline YAML (its built deployment: a precompute stage)'))
    .description('serve the judge over HTTP: head cache, distilled model, LLM (POST /v1/relevance, OpenAI-compatible /v1/chat/completions)')
    .option('--stage <name>', 'the deployment (precompute) stage to serve (default: the only one)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', (v) => (v === '0' ? 0 : positiveInt(v)), 8080)
    .option('--body-limit <bytes>', 'largest request body (413 beyond)', positiveInt, 1_048_576)
    .option('--max-items <n>', 'most items in one relevance request', positiveInt, 256)
    .option('--memo-entries <n>', 'head-cache entries kept parsed in memory (past it, the first in goes)', positiveInt, 50_000)
    .addOption(new Option('--log-level <level>', 'JSON logs on stdout').choices(['silent', 'error', 'warn', 'info', 'debug']).default('info'))
    .option('--access-log', 'one log line per request (off by default: /metrics counts them)', false)
    .addOption(new Option('--api-key <key>', 'require Authorization: Bearer <key> on /v1 routes (401 otherwise)').env('LORE_API_KEY'))
    .action(
      reportingErrors(io, setExit, async (config: string, flags) => {
        const { builtArtifacts } = await import('./commands/artifacts.ts');
        const { serveCommand } = await import('../stages/lib/serving/serve-command.ts');
        const artifacts = await builtArtifacts(config, flags, io);
        setExit(await serveCommand(artifacts, { ...flags, logger: flags.logLevel === 'silent' ? false : { level: flags.logLevel } }, io));
      }),
    );

  withConfigOptions(program.command('export').argument('<config>', 'pipeline YAML').argument('<stage>', 'a stage whose artifact is a checkpoint'))
    .description("copy the stage's checkpoint with an ONNX export (onnx/model.onnx) that onnxruntime and transformers.js load")
    .option('--out <dir>', 'where to write it (default: <store>/exports/<pipeline>/<stage>)')
    .action(async (config: string, stage: string, flags) => setExit(await exportCommand(config, stage, flags, io)));

  program
    .command('stages')
    .description('registered stage types and their params')
    .action(() => setExit(stagesCommand(io)));

  // Run by remote executors on a worker: build exactly one stage, as the submitting run planned it.
  withConfigOptions(program.command('run-stage', { hidden: true }).argument('<config>').argument('<stage>'))
    .option('--lock-token <token>', "the submitting run's store lock token")
    .option('--expect-fingerprint <fp>', 'fail unless the stage plans to this fingerprint')
    .option('--force', 'rebuild even if cached')
    .action(async (config: string, stageName: string, flags) => {
      const loaded = await loadOrThrow(config, flags, io);
      const store = storeFor(loaded, flags, io);
      const lock = await acquireStoreLock(store.root, {
        wait: true,
        token: flags.lockToken,
        command: `pipeline run-stage ${config} ${stageName}`,
        onWait: (holder) => io.err(`waiting for the store lock held by ${describeHolder(holder)} ...`),
      });
      try {
        const plan = await planOrThrow(loaded, store, { selection: { only: [stageName] }, force: flags.force ? [stageName] : [] });
        const stage = plan.stages.find((s) => s.name === stageName);
        if (!stage) throw new Error(`Internal error: ${stageName} selected but not planned`);
        if (flags.expectFingerprint && flags.expectFingerprint !== stage.fingerprint) {
          io.err(`error: ${stageName} plans to ${stage.fingerprint} here, but ${flags.expectFingerprint} was expected: the config, a --set or a user file differs on this machine`);
          return setExit(EXIT.usage);
        }
        io.out(describeDecision(stage));
        if (stage.decision.action === 'cached') {
          await store.writeRef(loaded.config.name, stage.name, stage.fingerprint);
          return setExit(EXIT.ok);
        }
        const controller = new AbortController();
        const stop = () => controller.abort();
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
        const result = await runStageInProcess(plan, stage, { signal: controller.signal, emit: () => {} });
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        io.out(`${stageName}: ${result.state} in ${result.durationS.toFixed(1)}s${result.message ? ` (${result.message})` : ''}; log ${result.logPath}`);
        setExit(result.state === 'succeeded' ? EXIT.ok : EXIT.failed);
      } finally {
        await lock.release();
      }
    });
  return program;
}

export async function main(argv: readonly string[], io: Io = processIo): Promise<number> {
  let exit: number = EXIT.ok;
  const program = buildProgram(io, (code) => {
    exit = code;
  });
  try {
    await program.parseAsync([...argv]);
    return exit;
  } catch (error) {
    if (error instanceof DiagnosticsError) return printDiagnostics(error.diagnostics, io);
    if (error instanceof StoreError || error instanceof LockBusyError || error instanceof BrokenJsonError || error instanceof DiskFullError) {
      io.err(`error: ${error.message}`);
      return EXIT.failed;
    }
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    io.err(`Internal error: ${(error as Error).stack ?? String(error)}`);
    return EXIT.failed;
  }
}

