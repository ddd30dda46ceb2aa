/**
 * Parsing a large config: a generated `stages:` map of exec stages, ~4 MB (the size that took 27 s
 * with the YAML library's own duplicate-key check, which is quadratic in a map's size). Prints the
 * time of the config's YAML phase (parse, duplicate keys, to a plain value: yaml-text.ts) and of
 * the whole `loadConfig` (schemas, graph, stage checks), with the bare `parseDocument` + `toJS` as
 * the reference in the same process. The library's quadratic check is timed too, on a quarter of
 * the size (it does not finish in reasonable time on the full one). Last line is JSON.
 *
 *   npx tsx bench/config-parse.ts [megabytes]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseDocument } from 'yaml';
import { loadConfig } from '../pipeline/config/load.ts';
import { configValue, parseConfigYaml } from '../pipeline/config/yaml-text.ts';
import { builtinStages } from '../stages/registry.ts';

const megabytes = Number(process.argv[2] ?? 4);

function config(bytes: number): { text: string; stages: number } {
  const lines = ['name: big', 'stages:'];
  let size = 0;
  let i = 0;
  while (size < bytes) {
    const needs = i > 0 ? `, needs: [s${i - 1}]` : '';
    const line = `  s${i}: { uses: exec${needs}, with: { command: "echo stage ${i} > $PIPELINE_OUT/out.txt" } }`;
    lines.push(line);
    size += line.length + 1;
    i++;
  }
  return { text: `${lines.join('\n')}\n`, stages: i };
}

const seconds = (start: number) => (performance.now() - start) / 1000;
const { text, stages } = config(megabytes * 1024 * 1024);

let start = performance.now();
parseDocument(text, { uniqueKeys: false }).toJS();
const referenceS = seconds(start);

start = performance.now();
const parsed = parseConfigYaml('big.yaml', text);
const value = configValue(parsed.doc, parsed.sourceFile);
const yamlS = seconds(start);
if (parsed.fatal.length + parsed.diagnostics.length > 0 || 'diagnostic' in value) throw new Error('the generated config has YAML errors');

const dir = mkdtempSync(path.join(tmpdir(), 'bench-config-'));
writeFileSync(path.join(dir, 'big.yaml'), text);
start = performance.now();
const loaded = await loadConfig('big.yaml', { registry: builtinStages, cwd: dir });
const loadS = seconds(start);
rmSync(dir, { recursive: true, force: true });
if (!loaded.ok) throw new Error(`the generated config does not load: ${loaded.diagnostics[0]?.message}`);

const quarter = config((megabytes * 1024 * 1024) / 4);
start = performance.now();
parseDocument(quarter.text, { uniqueKeys: true }).toJS();
const libraryQuarterS = seconds(start);
start = performance.now();
const quarterParsed = parseConfigYaml('quarter.yaml', quarter.text);
configValue(quarterParsed.doc, quarterParsed.sourceFile);
const oursQuarterS = seconds(start);

console.log(`${(text.length / 1024 / 1024).toFixed(1)} MB, ${stages} stages`);
console.log(`  parseDocument + toJS (reference):   ${referenceS.toFixed(2)} s`);
console.log(`  YAML phase (yaml-text.ts):          ${yamlS.toFixed(2)} s (${(yamlS / referenceS).toFixed(2)}x the reference)`);
console.log(`  loadConfig (everything validate does): ${loadS.toFixed(2)} s`);
console.log(`${(quarter.text.length / 1024 / 1024).toFixed(1)} MB, ${quarter.stages} stages: the library's uniqueKeys ${libraryQuarterS.toFixed(2)} s, yaml-text.ts ${oursQuarterS.toFixed(2)} s`);
console.log(JSON.stringify({ megabytes: text.length / 1024 / 1024, stages, reference_s: referenceS, yaml_phase_s: yamlS, ratio: yamlS / referenceS, load_config_s: loadS, quarter_unique_keys_s: libraryQuarterS, quarter_yaml_phase_s: oursQuarterS }));
