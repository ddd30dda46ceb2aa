#!/usr/bin/env node
// Entry point for `npx pipeline`. The project ships TypeScript sources and runs them through tsx,
// which also lets users point `uses:` and reward `use:` at their own .ts files without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../pipeline/cli.ts');
process.exitCode = await main(process.argv);
