#!/usr/bin/env node
// Entry point for `npx pipeline`, and the composition root: the orchestrator (pipeline/) knows no
// stage, so this file hands it the built-in stage types and the commands that belong to stages.
//
// It runs the compiled JavaScript in dist/ (built by `npm ci`/`npm install` through `prepare`, or
// `npm run build`) when dist/ matches the sources, and the TypeScript sources through tsx otherwise
// (a checkout never built, or a source edited since): a stale build is never run. dist/sources.json
// holds each source's size, modification time and sha256 as scripts/build-dist.ts saw them. Either way a
// user's `.ts` stage or reward file loads without a build step (pipeline/user-module.ts registers
// tsx when it imports one). PIPELINE_FROM_SOURCE=1 forces the sources; PIPELINE_FROM_SOURCE=0
// forces dist/, and refuses to start when it is missing or stale (benchmarks and tests of dist/).
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

const root = new URL('../', import.meta.url);

// A reader that stops early (`pipeline stages | head`) closes the pipe: what is left to print has
// nowhere to go, and the command finishes without it instead of dying on an unhandled EPIPE with a
// stack trace (a `run` keeps running and publishes as it would).
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

function compiledIsCurrent() {
  try {
    const { files } = JSON.parse(readFileSync(new URL('dist/sources.json', root), 'utf8'));
    for (const [file, [size, mtimeMs, sha256]] of Object.entries(files)) {
      const url = new URL(file, root);
      const stat = statSync(url);
      if (stat.size !== size) return false;
      // Same time: unchanged (the fast path). Another time: compare the bytes.
      if (stat.mtimeMs !== mtimeMs && createHash('sha256').update(readFileSync(url)).digest('hex') !== sha256) return false;
    }
    return true;
  } catch {
    return false;
  }
}

let from = '../dist/';
let ext = '.js';
const current = process.env.PIPELINE_FROM_SOURCE !== '1' && compiledIsCurrent();
if (process.env.PIPELINE_FROM_SOURCE === '0' && !current) {
  process.stderr.write('error: PIPELINE_FROM_SOURCE=0 but dist/ is missing or older than the sources: run `npm run build`\n');
  process.exit(2);
}
if (!current) {
  // Both of tsx's hooks: a user's .ts file outside an ES-module package is CommonJS to Node, and
  // without the CommonJS hook Node 20 refuses to load it ("Cannot require() ES Module ... in a cycle").
  const [esm, commonJs] = await Promise.all([import('tsx/esm/api'), import('tsx/cjs/api')]);
  esm.register();
  commonJs.register();
  from = '../';
  ext = '.ts';
}
const [{ main, processIo }, { stageCommands }] = await Promise.all([import(`${from}pipeline/cli${ext}`), import(`${from}stages/commands${ext}`)]);
const { version } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));
process.exitCode = await main(process.argv, processIo, {
  stages: async () => (await import(`${from}stages/registry${ext}`)).builtinStages,
  commands: stageCommands,
  version,
});
