#!/usr/bin/env node
// Entry point for `npx pipeline`. The project ships TypeScript sources and runs them through tsx,
// which also lets users point `uses:` and reward `use:` at their own .ts files without a build step.
// Both of tsx's hooks: a user's .ts file outside an ES-module package is CommonJS to Node, and
// without the CommonJS hook Node 20 refuses to load it ("Cannot require() ES Module ... in a cycle").
import { register as registerCommonJs } from 'tsx/cjs/api';
import { register } from 'tsx/esm/api';

register();
registerCommonJs();
const { main } = await import('../pipeline/cli.ts');
process.exitCode = await main(process.argv);
