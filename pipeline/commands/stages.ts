/** `pipeline stages`: every registered stage type and its params, printed from the schemas. */
import { z } from 'zod';
import { EXIT, stageTypes, type CommandIo } from './common.ts';

export interface JsonSchemaNode {
  type?: string | string[];
  default?: unknown;
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
  /** Keys that must be given (zod's input schema leaves out optional and defaulted ones). */
  required?: string[];
  anyOf?: JsonSchemaNode[];
  enum?: unknown[];
  items?: JsonSchemaNode;
}

function typeName(node: JsonSchemaNode): string {
  if (node.enum) return node.enum.map((v) => JSON.stringify(v)).join(' | ');
  if (node.anyOf) return node.anyOf.map(typeName).join(' | ');
  if (node.type === 'array' && node.items) return `${typeName(node.items)}[]`;
  return Array.isArray(node.type) ? node.type.join(' | ') : (node.type ?? 'any');
}

/**
 * How a param may be left out: its default, "optional" (optional, or nullable: null is a value a
 * user may leave to mean "none"), or "required". Read from the input JSON schema, where an optional
 * or defaulted key is absent from `required`.
 */
export function paramPresence(key: string, node: JsonSchemaNode, required: ReadonlySet<string>): string {
  if (node.default !== undefined) return `default ${JSON.stringify(node.default)}`;
  const nullable = node.type === 'null' || (Array.isArray(node.type) && node.type.includes('null')) || (node.anyOf ?? []).some((n) => n.type === 'null');
  return required.has(key) && !nullable ? 'required' : 'optional';
}

export async function stagesCommand(io: CommandIo): Promise<number> {
  for (const type of await stageTypes(io.stages)) {
    io.out(`${type.name} (v${type.version}, ${type.resources}, produces ${type.produces}): ${type.description}`);
    const schema = z.toJSONSchema(type.params, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
    const required = new Set(schema.required ?? []);
    for (const [key, node] of Object.entries(schema.properties ?? {})) {
      const fallback = paramPresence(key, node, required);
      io.out(`  ${key} (${typeName(node)}, ${fallback})${node.description ? `: ${node.description}` : ''}`);
    }
    // Old names still accepted (with a warning), so a user reading an old config finds the new key.
    for (const [oldKey, newKey] of Object.entries(type.renamedParams ?? {})) io.out(`  ${oldKey}: renamed ${newKey} (the old name still loads, with a warning)`);
  }
  return EXIT.ok;
}
