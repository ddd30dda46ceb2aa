/** `pipeline stages`: every registered stage type and its params, printed from the schemas. */
import { z } from 'zod';
import { builtinStages } from '../../stages/registry.ts';
import { EXIT, type Io } from './common.ts';

interface JsonSchemaNode {
  type?: string | string[];
  default?: unknown;
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
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

export function stagesCommand(io: Io): number {
  for (const type of builtinStages) {
    io.out(`${type.name} (v${type.version}, ${type.resources}, produces ${type.produces}): ${type.description}`);
    const schema = z.toJSONSchema(type.params, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
    for (const [key, node] of Object.entries(schema.properties ?? {})) {
      const fallback = node.default === undefined ? 'required' : `default ${JSON.stringify(node.default)}`;
      io.out(`  ${key} (${typeName(node)}, ${fallback})${node.description ? `: ${node.description}` : ''}`);
    }
  }
  return EXIT.ok;
}
