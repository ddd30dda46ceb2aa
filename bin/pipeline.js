#!/usr/bin/env node
// Entry point for `npx pipeline`, and the composition root: the orchestrator (pipeline/) knows no
// stage, so this file hands it the built-in stage types and the commands that belong to stages.
// The project ships TypeScript sources and runs them through tsx, which also lets users point
// `uses:` and reward `use:` at their own .ts files without a build step.
// Both of tsx's hooks: a user's .ts file outside an ES-module package is CommonJS to Node, and
// without the CommonJS hook Node 20 refuses to load it ("Cannot require() ES Module ... in a cycle").
import { readFileSync } from 'node:fs';
import { register as registerCommonJs } from 'tsx/cjs/api';
import { register } from 'tsx/esm/api';

register();
registerCommonJs();
const { main, processIo } = await import('../pipeline/cli.ts');
const { stageCommands } = await import('../stages/commands.ts');
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
process.exitCode = await main(process.argv, processIo, {
  stages: async () => (await import('../stages/registry.ts')).builtinStages,
  commands: stageCommands,
  version,
});
