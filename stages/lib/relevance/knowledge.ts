/**
 * The hand-written domain knowledge under data/ (see data/README.md): loaded, validated against
 * zod schemas and against each other, and resolved into one JSON-serialisable `Knowledge` bundle.
 * The world stage copies the bundle into its artifact, so `kg` and later stages read the exact
 * knowledge the data was generated with.
 *
 * Every problem is collected and reported together, each with file:line:col and the key path.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { type Diagnostic, DiagnosticsError, formatDiagnostics, issuesToDiagnostics, type KeyPath, locate, type YamlSource } from '../../../pipeline/api.ts';
import { conditionFeatures, ruleSchema, type Rule } from './rules.ts';
import { inflections, normalise, titleCase } from './text.ts';

export const BUILTIN_KNOWLEDGE_DIR = fileURLToPath(new URL('../../../data/', import.meta.url));
export const KNOWLEDGE_FILES = ['ontology.yaml', 'attributes.yaml', 'brands.yaml', 'lexicon.yaml', 'relations.yaml', 'rules.yaml'] as const;

const name = z.string().min(1);
const typeSchema = z.strictObject({
  name,
  display: z.string().optional(),
  parent: z.string().optional(),
  abstract: z.boolean().default(false),
  attributes: z.array(name).min(1),
  values: z.record(z.string(), z.array(name).min(1)).default({}),
});
const ontologySchema = z.strictObject({
  departments: z.array(z.strictObject({ name, groups: z.array(z.strictObject({ name, types: z.array(typeSchema).min(1) })).min(1) })).min(1),
});
const attributesSchema = z.strictObject({
  dimensions: z
    .array(
      z.strictObject({
        key: name,
        hard: z.boolean().default(false),
        visual: z.boolean().default(false),
        description: z.string().optional(),
        values: z.array(name).optional(),
        common: z.array(name).optional(),
        satisfies: z.record(z.string(), z.array(name)).default({}),
      }),
    )
    .min(1),
});
const brandsSchema = z.strictObject({
  brands: z.array(z.strictObject({ name, makes: z.array(name).min(1), aliases: z.array(name).default([]) })).min(1),
});
const aliasKinds = ['synonym', 'colloquial', 'misspelling'] as const;
export type AliasKind = (typeof aliasKinds)[number];
const aliasGroups = z.strictObject(Object.fromEntries(aliasKinds.map((k) => [k, z.record(z.string(), z.array(name)).default({})])) as Record<AliasKind, z.ZodDefault<z.ZodRecord<z.ZodString, z.ZodArray<z.ZodString>>>>);
const lexiconSchema = z.strictObject({
  products: aliasGroups,
  values: aliasGroups,
  models: z.array(z.strictObject({ name, brand: name, type: name })).default([]),
  needs: z.array(z.strictObject({ phrase: name, type: name })).default([]),
});
const relationsSchema = z.strictObject({
  accessory: z.array(z.strictObject({ accessory: name, of: name, compatibility: z.boolean().default(false) })).default([]),
  complement: z.array(z.tuple([name, name])).default([]),
  substitute: z.array(z.tuple([name, name])).default([]),
});
const rulesSchema = z.strictObject({ rules: z.array(ruleSchema).min(1) });

export interface ProductType {
  name: string;
  display: string;
  department: string;
  group: string;
  /** [department, group, display]: the category path items of this type carry. */
  path: string[];
  parent?: string;
  abstract: boolean;
  attributes: string[];
  /** The values items of this type draw from, per attribute (brand, model, compatibility included). */
  values: Record<string, string[]>;
}
export interface Dimension {
  key: string;
  hard: boolean;
  visual: boolean;
  values: string[];
  satisfies: Record<string, string[]>;
}
export interface AliasEntry {
  alias: string;
  canonical: string;
  /** `mined`: found in a catalog's train pairs (catalog-kg.ts), not written in the lexicon. */
  kind: AliasKind | 'mined';
}
export interface Knowledge {
  types: ProductType[];
  dimensions: Dimension[];
  brands: { name: string; makes: string[]; aliases: string[] }[];
  productAliases: AliasEntry[];
  valueAliases: AliasEntry[];
  models: { name: string; brand: string; type: string }[];
  needs: { phrase: string; type: string }[];
  relations: z.output<typeof relationsSchema>;
  rules: Rule[];
  /**
   * Set for knowledge induced from a catalog (catalog-kg.ts): a product name's type is its LAST
   * product word ("bluetooth speaker stand" is a stand), as in free-text titles and queries. The
   * built-in world's queries and titles name their product first, so it leaves this unset.
   */
  headFinal?: boolean;
}

/** Features a rule condition may test (see data/rules.yaml); `attr.<key>` for every dimension. */
const RULE_FEATURES = ['category', 'link', 'core', 'negation', 'conflicts', 'hard_conflicts', 'soft_conflicts', 'unknowns'];

interface Loaded<T> {
  source: YamlSource;
  value: T;
}

function loadYaml<S extends z.ZodType>(dir: string, file: string, schema: S, diagnostics: Diagnostic[]): Loaded<z.output<S>> | undefined {
  const full = path.join(dir, file);
  const displayPath = path.relative(process.cwd(), full) || full;
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (error) {
    diagnostics.push({ location: { origin: displayPath }, message: `cannot read knowledge file: ${(error as Error).message}` });
    return undefined;
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const source: YamlSource = { file: { displayPath, text, lines }, doc, overrides: [] };
  if (doc.errors.length > 0) {
    for (const error of doc.errors) {
      diagnostics.push({ location: { file: source.file, start: error.pos[0], end: error.pos[1] }, message: `${error.message} (YAML ${error.code})` });
    }
    return undefined;
  }
  const raw: unknown = doc.toJS();
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    diagnostics.push(...issuesToDiagnostics(parsed.error.issues, raw, schema, source));
    return undefined;
  }
  return { source, value: parsed.data };
}

/** sha256 over the knowledge files' bytes: the world stage's version includes it, so editing data/ reruns it. */
export function knowledgeDigest(dir: string = BUILTIN_KNOWLEDGE_DIR): string {
  const hash = createHash('sha256');
  for (const file of KNOWLEDGE_FILES) {
    hash.update(file);
    hash.update(readFileSync(path.join(dir, file)));
  }
  return hash.digest('hex');
}

export function loadKnowledge(dir: string = BUILTIN_KNOWLEDGE_DIR): Knowledge {
  const diagnostics: Diagnostic[] = [];
  const ontology = loadYaml(dir, 'ontology.yaml', ontologySchema, diagnostics);
  const attributes = loadYaml(dir, 'attributes.yaml', attributesSchema, diagnostics);
  const brands = loadYaml(dir, 'brands.yaml', brandsSchema, diagnostics);
  const lexicon = loadYaml(dir, 'lexicon.yaml', lexiconSchema, diagnostics);
  const relations = loadYaml(dir, 'relations.yaml', relationsSchema, diagnostics);
  const rules = loadYaml(dir, 'rules.yaml', rulesSchema, diagnostics);
  if (!ontology || !attributes || !brands || !lexicon || !relations || !rules) throw knowledgeError(diagnostics);

  const report = (loaded: Loaded<unknown>, keyPath: KeyPath, message: string) =>
    diagnostics.push({ location: locate(loaded.source, keyPath), path: keyPath, message });

  // Dimensions: brand, model and compatibility values come from brands and models.
  const modelNames = lexicon.value.models.map((m) => m.name);
  const dimensions: Dimension[] = attributes.value.dimensions.map((d) => ({
    key: d.key,
    hard: d.hard,
    visual: d.visual,
    values: d.key === 'brand' ? brands.value.brands.map((b) => b.name) : d.key === 'model' || d.key === 'compatibility' ? modelNames : (d.values ?? []),
    satisfies: d.satisfies,
  }));
  const dimensionByKey = new Map(dimensions.map((d) => [d.key, d]));
  attributes.value.dimensions.forEach((d, i) => {
    const values = dimensionByKey.get(d.key)?.values ?? [];
    if (values.length === 0) report(attributes, ['dimensions', i], `dimension "${d.key}" has no values`);
    d.common?.forEach((v, j) => {
      if (!values.includes(v)) report(attributes, ['dimensions', i, 'common', j], `"${v}" is not one of ${d.key}'s values`);
    });
  });

  // Types, with their category paths.
  const types: ProductType[] = [];
  const typeLocations = new Map<string, KeyPath>();
  ontology.value.departments.forEach((dept, di) =>
    dept.groups.forEach((group, gi) =>
      group.types.forEach((t, ti) => {
        const keyPath = ['departments', di, 'groups', gi, 'types', ti];
        if (typeLocations.has(t.name)) report(ontology, keyPath, `product type "${t.name}" is declared twice`);
        typeLocations.set(t.name, keyPath);
        const display = t.display ?? titleCase(t.name);
        types.push({ name: t.name, display, department: dept.name, group: group.name, path: [dept.name, group.name, display], parent: t.parent, abstract: t.abstract, attributes: t.attributes, values: {} });
      }),
    ),
  );
  const typeNames = new Set(types.map((t) => t.name));
  const groupNames = new Set(types.map((t) => t.group));
  const departmentNames = new Set(types.map((t) => t.department));
  const checkType = (loaded: Loaded<unknown>, keyPath: KeyPath, type: string) => {
    if (!typeNames.has(type)) report(loaded, keyPath, `unknown product type "${type}"`);
  };

  // Brands: what each makes, resolved to type names.
  const resolvedBrands = brands.value.brands.map((b, bi) => {
    const makes = new Set<string>();
    b.makes.forEach((m, mi) => {
      const covered = types.filter((t) => t.name === m || t.group === m || t.department === m).map((t) => t.name);
      if (covered.length === 0) report(brands, ['brands', bi, 'makes', mi], `"${m}" is not a product type, group or department in ontology.yaml`);
      covered.forEach((t) => makes.add(t));
    });
    return { name: b.name, makes: [...makes].sort(), aliases: b.aliases };
  });
  lexicon.value.models.forEach((m, i) => {
    checkType(lexicon, ['models', i, 'type'], m.type);
    if (!resolvedBrands.some((b) => b.name === m.brand)) report(lexicon, ['models', i, 'brand'], `unknown brand "${m.brand}"`);
  });
  lexicon.value.needs.forEach((n, i) => checkType(lexicon, ['needs', i, 'type'], n.type));
  relations.value.accessory.forEach((r, i) => {
    checkType(relations, ['accessory', i, 'accessory'], r.accessory);
    checkType(relations, ['accessory', i, 'of'], r.of);
  });
  for (const kind of ['complement', 'substitute'] as const) {
    relations.value[kind].forEach((pair, i) => pair.forEach((t, j) => checkType(relations, [kind, i, j], t)));
  }

  // Per-type value lists.
  ontology.value.departments.forEach((dept, di) =>
    dept.groups.forEach((group, gi) =>
      group.types.forEach((t, ti) => {
        const keyPath = ['departments', di, 'groups', gi, 'types', ti];
        const type = types.find((x) => x.name === t.name) as ProductType;
        if (t.parent !== undefined) checkType(ontology, [...keyPath, 'parent'], t.parent);
        t.attributes.forEach((key, ai) => {
          const dimension = dimensionByKey.get(key);
          if (!dimension) return report(ontology, [...keyPath, 'attributes', ai], `unknown attribute "${key}"${` (known: ${[...dimensionByKey.keys()].join(', ')})`}`);
          const common = attributes.value.dimensions.find((d) => d.key === key)?.common;
          let values = t.values[key] ?? common ?? dimension.values;
          if (key === 'brand') values = resolvedBrands.filter((b) => b.makes.includes(t.name)).map((b) => b.name);
          if (key === 'model') values = lexicon.value.models.filter((m) => m.type === t.name).map((m) => m.name);
          if (key === 'compatibility') {
            const mains = relations.value.accessory.filter((r) => r.accessory === t.name && r.compatibility).map((r) => r.of);
            values = lexicon.value.models.filter((m) => mains.includes(m.type)).map((m) => m.name);
          }
          if (values.length === 0 && !t.abstract) report(ontology, [...keyPath, 'attributes', ai], `type "${t.name}" has no ${key} values (add brands, models or values for it)`);
          type.values[key] = values;
        });
        for (const [key, values] of Object.entries(t.values)) {
          const dimension = dimensionByKey.get(key);
          if (!t.attributes.includes(key)) report(ontology, [...keyPath, 'values', key], `"${key}" has values but is not in the type's attributes`);
          values.forEach((v, vi) => {
            if (dimension && !dimension.values.includes(v)) report(ontology, [...keyPath, 'values', key, vi], `"${v}" is not one of ${key}'s values in attributes.yaml`);
          });
        }
      }),
    ),
  );

  // Aliases: canonical names must exist.
  const allValues = new Set(dimensions.flatMap((d) => d.values));
  const productAliases: AliasEntry[] = [];
  const valueAliases: AliasEntry[] = [];
  for (const kind of aliasKinds) {
    for (const [canonical, aliases] of Object.entries(lexicon.value.products[kind])) {
      checkType(lexicon, ['products', kind, canonical], canonical);
      aliases.forEach((alias) => productAliases.push({ alias, canonical, kind }));
    }
    for (const [canonical, aliases] of Object.entries(lexicon.value.values[kind])) {
      if (!allValues.has(canonical)) report(lexicon, ['values', kind, canonical], `"${canonical}" is not an attribute value in attributes.yaml`);
      aliases.forEach((alias) => valueAliases.push({ alias, canonical, kind }));
    }
  }

  // Every surface form must name one entity, or linking would be a guess.
  const owners = new Map<string, string>();
  const claim = (loaded: Loaded<unknown>, keyPath: KeyPath, surface: string, entity: string) => {
    const key = normalise(surface);
    const owner = owners.get(key);
    if (owner !== undefined && owner !== entity) report(loaded, keyPath, `"${surface}" already names ${owner}; a name may point to one entity only`);
    else owners.set(key, entity);
  };
  types.forEach((t) => claim(ontology, typeLocations.get(t.name) ?? [], t.name, `product ${t.name}`));
  dimensions.forEach((d, i) => {
    if (d.key === 'brand' || d.key === 'model' || d.key === 'compatibility') return;
    d.values.forEach((v, j) => claim(attributes, ['dimensions', i, 'values', j], v, `${d.key} ${v}`));
  });
  resolvedBrands.forEach((b, i) => [b.name, ...b.aliases].forEach((a) => claim(brands, ['brands', i], a, `brand ${b.name}`)));
  lexicon.value.models.forEach((m, i) => claim(lexicon, ['models', i], m.name, `model ${m.name}`));
  lexicon.value.needs.forEach((n, i) => claim(lexicon, ['needs', i], n.phrase, `need ${n.phrase}`));
  for (const entry of productAliases) claim(lexicon, ['products', entry.kind, entry.canonical], entry.alias, `product ${entry.canonical}`);
  for (const entry of valueAliases) {
    const owner = dimensions.find((d) => d.values.includes(entry.canonical));
    claim(lexicon, ['values', entry.kind, entry.canonical], entry.alias, `${owner?.key} ${entry.canonical}`);
  }
  // Derived plural/singular forms must not shadow another entity's name either.
  for (const t of types) for (const form of inflections(normalise(t.name))) if (owners.has(form) && owners.get(form) !== `product ${t.name}`) report(ontology, typeLocations.get(t.name) ?? [], `the inflected form "${form}" of "${t.name}" already names ${owners.get(form)}`);

  // Rules: features must exist, ids must be unique, example types must exist.
  const features = new Set([...RULE_FEATURES, ...dimensions.map((d) => `attr.${d.key}`)]);
  const ruleIds = new Set<string>();
  rules.value.rules.forEach((rule, i) => {
    if (ruleIds.has(rule.id)) report(rules, ['rules', i, 'id'], `rule id ${rule.id} is used twice`);
    ruleIds.add(rule.id);
    for (const feature of conditionFeatures(rule.when)) {
      if (!features.has(feature)) report(rules, ['rules', i, 'when'], `unknown feature "${feature}" (known: ${[...features].join(', ')})`);
    }
    checkType(rules, ['rules', i, 'example', 'item', 'type'], rule.example.item.type);
  });
  if (!groupNames.size || !departmentNames.size) report(ontology, [], 'the ontology has no types');

  if (diagnostics.length > 0) throw knowledgeError(diagnostics);
  return {
    types,
    dimensions,
    brands: resolvedBrands,
    productAliases,
    valueAliases,
    models: lexicon.value.models,
    needs: lexicon.value.needs,
    relations: relations.value,
    rules: rules.value.rules,
  };
}

function knowledgeError(diagnostics: Diagnostic[]): DiagnosticsError {
  const error = new DiagnosticsError(diagnostics);
  // Stage failures are shown by their message, so it carries the located, formatted text.
  error.message = `invalid knowledge files:\n${formatDiagnostics(diagnostics)}`;
  return error;
}
