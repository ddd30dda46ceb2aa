/**
 * The orchestrator's public surface: the only module of `pipeline/` that stages (built-in or a
 * user's), reward modules and stage-owned commands import. Everything else under `pipeline/` is the
 * orchestrator's own and may change without notice; what is exported here is the contract.
 *
 * - The stage contract (stage-api.ts): `StageType`, `defineStage`, `StageContext`, artifact kinds,
 *   `Inputs`, manifests, the engine config.
 * - The seeded random stream every stage draws from (`Rng`, `ctx.rng`), so runs repeat.
 * - Diagnostics: how a stage reports a problem in a user's file with its file, line and key path
 *   (`DiagnosticsError`, `locate`, `issuesToDiagnostics`).
 * - Loading a user's module (a reward or stage file, `.ts` without a build step).
 * - Progress text and report fragments, so a stage's output looks like the orchestrator's.
 * - Stage-owned commands (`score`, `serve`, `export`): `StageCommand`, the option parsers, exit codes
 *   and the built artifacts of a config.
 */
export * from './stage-api.ts';
export { hashString, Rng, type RngState } from './rng.ts';
export { DiagnosticsError, formatDiagnostics, type Diagnostic, type KeyPath } from './diagnostics.ts';
export { issuesToDiagnostics } from './config/issues.ts';
export { locate, type YamlSource } from './config/locate.ts';
export { checkUserModule, describeLoadError, importUserModule } from './user-module.ts';
export { progressText } from './progress/display.ts';
export { REPORT_FRAGMENT_FILE, type Cell, type FragmentBlock, type ReportFragment } from './report/fragment.ts';
export { shortFingerprint } from './fingerprint.ts';
export { MANIFEST } from './store/store.ts';
export { makeWritable } from './store/trash.ts';
export { EXIT, type CommandIo, type Io } from './commands/io.ts';
export type { ConfigOptions } from './commands/common.ts';
export type { BuiltArtifacts } from './commands/artifacts.ts';
export { positiveInt, stageList, unitInterval, type CommandKit, type StageCommand } from './commands/extension.ts';
