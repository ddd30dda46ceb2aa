/**
 * The `pipeline` command line. Exit codes: 0 success, 1 a stage failed (or the store was busy with
 * --no-wait), 2 bad usage or config, 130 the run was stopped (SIGINT/SIGTERM).
 */
import { Command, CommanderError, Option } from 'commander';
import { DiagnosticsError, formatDiagnostics } from './diagnostics.ts';
import { LockBusyError } from './store/lock.ts';
import { BrokenJsonError, DiskFullError } from './store/fs-util.ts';
import { StoreError } from './store/store.ts';
import { collect, positiveInt, reportingErrors, splitList, stageList, unitInterval, withConfigOptions, type CommandKit, type StageCommand } from './commands/extension.ts';
import { EXIT, type CommandIo, type Io, type StageSource } from './commands/io.ts';

export { processIo } from './commands/io.ts';

// Each command imports its module when it runs, so `--help`, `--version` and a light command load
// nothing they do not use (the config loader, the executors, the report's chart renderer).

interface SelectionFlags {
  only?: string;
  from?: string;
  until?: string;
  force?: string[];
}

function withSelection(command: Command): Command {
  return command
    .option('--only <stages>', 'only these stages (comma-separated); their inputs come from the store')
    .option('--from <stage>', 'this stage and everything downstream of it')
    .option('--until <stage>', 'this stage and everything upstream of it')
    .option('--force <stage>', 'rebuild this stage even if cached (repeatable)', collect);
}

const selection = (flags: SelectionFlags) => ({ only: splitList(flags.only), from: flags.from, until: flags.until });

/**
 * What the composition root (bin/pipeline.js) plugs into the orchestrator, which knows no stage:
 * the stage types configs may use, the commands that belong to stages, and the package version.
 */
export interface CliParts {
  stages: StageSource;
  commands: readonly StageCommand[];
  version?: string;
}

export function buildProgram(io: CommandIo, setExit: (code: number) => void, commands: readonly StageCommand[] = [], version?: string): Command {
  const program = new Command('pipeline')
    .description('Train LLM search-relevance judges end to end from one YAML DAG.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showHelpAfterError();
  if (version) program.version(version, '-V, --version', 'print the version');

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
      const { runCommand } = await import('./commands/run.ts');
      setExit(await runCommand(config, { ...flags, set, selection: selection(flags), force: flags.force ?? [], onError: flags.onError }, io));
    });

  withSelection(withConfigOptions(program.command('plan').argument('<config>', 'pipeline YAML')))
    .description('say what `run` would do and why, without running')
    .action(async (config: string, flags) => {
      const [{ loadOrThrow, planOrThrow, storeFor }, { describeDecision }] = await Promise.all([import('./commands/common.ts'), import('./plan.ts')]);
      const loaded = await loadOrThrow(config, flags, io);
      const plan = await planOrThrow(loaded, storeFor(loaded, flags, io), { selection: selection(flags), force: flags.force });
      for (const stage of plan.stages) io.out(describeDecision(stage));
      setExit(EXIT.ok);
    });

  withConfigOptions(program.command('validate').argument('<config>', 'pipeline YAML'))
    .description('check the config and report every problem')
    .action(async (config: string, flags) => {
      const { loadOrThrow } = await import('./commands/common.ts');
      const loaded = await loadOrThrow(config, flags, io);
      io.out(`${config}: ok, pipeline ${loaded.config.name}, ${loaded.stages.size} stages`);
      setExit(EXIT.ok);
    });

  for (const name of ['status', 'ls'] as const) {
    withConfigOptions(program.command(name).argument('<config>', 'pipeline YAML'))
      .description(name === 'status' ? 'each stage: up to date or not, and its last run' : 'the current artifact of each stage')
      .option('--json', 'print JSON')
      .action(async (config: string, flags) => {
        const { lsCommand, statusCommand } = await import('./commands/inspect.ts');
        setExit(await (name === 'status' ? statusCommand : lsCommand)(config, flags, io));
      });
  }

  withConfigOptions(program.command('show').argument('<config>', 'pipeline YAML').argument('<what>', 'a stage name or a fingerprint prefix'))
    .description("an artifact's manifest and files")
    .option('--json', 'print JSON')
    .action(async (config: string, what: string, flags) => setExit(await (await import('./commands/inspect.ts')).showCommand(config, what, flags, io)));

  withConfigOptions(program.command('gc').argument('<config>', 'pipeline YAML (names the store)'))
    .description('delete artifacts no ref points at and the config does not plan, and work folders no run would resume from')
    .option('--dry-run', 'list what would be deleted')
    .option('--resumable', 'also delete work folders a run would resume from (step checkpoints, of any pipeline)')
    .option('--clear-cache <name>', "also delete this named cache under the store's work/ (e.g. teacher-cache: paid-for teacher answers; repeatable)", collect)
    .option('--break-lock', 'take the store lock even from a holder that looks alive')
    .action(async (config: string, flags) => setExit(await (await import('./commands/gc.ts')).gcCommand(config, flags, io)));

  withConfigOptions(program.command('verify').argument('<config>', 'pipeline YAML (names the store)'))
    .description("re-hash every artifact in the store against its manifest; name what is damaged (--repair removes it, so the next run rebuilds it)")
    .option('--repair', 'remove damaged artifacts and what interrupted commands left (trash, .tmp- files)')
    .option('--json', 'print JSON')
    .option('--break-lock', 'take the store lock even from a holder that looks alive')
    .action(async (config: string, flags) => setExit(await (await import('./commands/verify.ts')).verifyCommand(config, flags, io)));

  withConfigOptions(program.command('report').argument('<config>', 'pipeline YAML'))
    .description('write one self-contained HTML report: the DAG, curves, metrics and stage report fragments')
    .option('--out <file>', 'where to write it (default: <store>/reports/<pipeline>.html)')
    .action(async (config: string, flags) => setExit(await (await import('./report/command.ts')).reportCommand(config, flags, io)));

  const kit: CommandKit = {
    io,
    setExit,
    withConfigOptions,
    reportingErrors: (action) => reportingErrors(io, setExit, action),
    builtArtifacts: async (configPath, options) => (await import('./commands/artifacts.ts')).builtArtifacts(configPath, options, io),
    parse: { positiveInt, stageList, unitInterval },
    exit: EXIT,
  };
  for (const addCommand of commands) addCommand(program, kit);

  program
    .command('stages')
    .description('registered stage types and their params')
    .action(async () => setExit(await (await import('./commands/stages.ts')).stagesCommand(io)));

  // Run by remote executors on a worker: build exactly one stage, as the submitting run planned it.
  withConfigOptions(program.command('run-stage', { hidden: true }).argument('<config>').argument('<stage>'))
    .option('--lock-token <token>', "the submitting run's store lock token")
    .option('--expect-fingerprint <fp>', 'fail unless the stage plans to this fingerprint')
    .option('--force', 'rebuild even if cached')
    .action(async (config: string, stageName: string, flags) => {
      const [{ loadOrThrow, planOrThrow, storeFor }, { describeDecision }, { acquireStoreLock, describeHolder }, { runStageInProcess }] = await Promise.all([
        import('./commands/common.ts'),
        import('./plan.ts'),
        import('./store/lock.ts'),
        import('./executor/run-stage.ts'),
      ]);
      const loaded = await loadOrThrow(config, flags, io, true);
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

export async function main(argv: readonly string[], io: Io, parts: CliParts): Promise<number> {
  let exit: number = EXIT.ok;
  const commandIo: CommandIo = { out: io.out, err: io.err, get cwd() { return io.cwd; }, stages: parts.stages };
  const program = buildProgram(commandIo, (code) => {
    exit = code;
  }, parts.commands, parts.version);
  try {
    await program.parseAsync([...argv]);
    return exit;
  } catch (error) {
    if (error instanceof DiagnosticsError) {
      io.err(formatDiagnostics(error.diagnostics));
      return EXIT.usage;
    }
    if (error instanceof StoreError || error instanceof LockBusyError || error instanceof BrokenJsonError || error instanceof DiskFullError) {
      io.err(`error: ${error.message}`);
      return EXIT.failed;
    }
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    io.err(`Internal error: ${(error as Error).stack ?? String(error)}`);
    return EXIT.failed;
  }
}

