/** The stage DAG: checks (missing needs, cycles), topological order, and `--only/--from/--until`. */
import { didYouMean, type Diagnostic } from './diagnostics.ts';
import { locate, type YamlSource } from './config/locate.ts';

/** Stage name -> the stages it needs, in YAML order. */
export type StageGraph = ReadonlyMap<string, readonly string[]>;

export function checkGraph(graph: StageGraph, source: YamlSource): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  for (const [stage, needs] of graph) {
    needs.forEach((target, index) => {
      if (!graph.has(target)) {
        diagnostics.push({
          location: locate(source, ['stages', stage, 'needs', index]),
          path: ['stages', stage, 'needs', index],
          message: `no stage named "${target}"${didYouMean(target, graph.keys())}`,
        });
      }
    });
  }
  for (const cycle of findCycles(graph)) {
    const hops = cycle.slice(0, -1).map((stage, i) => {
      const next = cycle[i + 1] as string;
      const index = (graph.get(stage) ?? []).indexOf(next);
      return { location: locate(source, ['stages', stage, 'needs', index]), message: `${stage} needs ${next}` };
    });
    diagnostics.push({
      location: hops[0]?.location,
      path: ['stages'],
      message: `cycle: ${cycle.join(' -> ')}`,
      notes: hops.slice(1),
    });
  }
  return diagnostics;
}

/**
 * One cycle per group of stages that need each other (a strongly connected component with a
 * cycle, Tarjan's algorithm), as a closed path [a, b, c, a] from the group's first stage in YAML
 * order; so two separate cycles are two errors. Unknown needs are ignored.
 */
export function findCycles(graph: StageGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (stage: string) => {
    index.set(stage, index.size);
    low.set(stage, index.get(stage) as number);
    stack.push(stage);
    onStack.add(stage);
    for (const next of graph.get(stage) ?? []) {
      if (!graph.has(next)) continue;
      if (!index.has(next)) {
        connect(next);
        low.set(stage, Math.min(low.get(stage) as number, low.get(next) as number));
      } else if (onStack.has(next)) {
        low.set(stage, Math.min(low.get(stage) as number, index.get(next) as number));
      }
    }
    if (low.get(stage) === index.get(stage)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== stage);
      components.push(component);
    }
  };
  for (const stage of graph.keys()) if (!index.has(stage)) connect(stage);

  // Positions looked up, not searched: a config of 40,000 stages has 40,000 components.
  const position = new Map([...graph.keys()].map((stage, i) => [stage, i]));
  const at = (stage: string) => position.get(stage) as number;
  const cycles: string[][] = [];
  for (const component of components) {
    // A lone stage is a cycle only when it needs itself.
    if (component.length === 1 && !(graph.get(component[0] as string) ?? []).includes(component[0] as string)) continue;
    const start = component.reduce((first, stage) => (at(stage) < at(first) ? stage : first));
    const path = shortestPathBack(graph, start, new Set(component));
    if (path) cycles.push(path);
  }
  return cycles.sort((a, b) => at(a[0] as string) - at(b[0] as string));
}

/** The shortest closed path start -> ... -> start inside `members` (breadth first), if any. */
function shortestPathBack(graph: StageGraph, start: string, members: ReadonlySet<string>): string[] | undefined {
  const previous = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const stage = queue.shift() as string;
    for (const next of graph.get(stage) ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        const chain = [stage];
        while (chain[0] !== start) chain.unshift(previous.get(chain[0] as string) as string);
        return [...chain, start];
      }
      if (!previous.has(next)) {
        previous.set(next, stage);
        queue.push(next);
      }
    }
  }
  return undefined;
}

/** Stages in an order where each comes after all it needs; ties keep YAML order. Assumes a DAG. */
export function topologicalOrder(graph: StageGraph): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (stage: string) => {
    if (seen.has(stage)) return;
    seen.add(stage);
    for (const need of graph.get(stage) ?? []) visit(need);
    order.push(stage);
  };
  for (const stage of graph.keys()) visit(stage);
  return order;
}

function closure(start: string, next: (stage: string) => readonly string[]): Set<string> {
  const found = new Set<string>([start]);
  const queue = [start];
  while (queue.length > 0) {
    for (const other of next(queue.pop() as string)) {
      if (!found.has(other)) {
        found.add(other);
        queue.push(other);
      }
    }
  }
  return found;
}

export interface Selection {
  only?: string[];
  /** This stage and everything downstream of it. */
  from?: string;
  /** This stage and everything upstream of it. */
  until?: string;
}

/** The selected stage names (all when nothing is given); unknown names are diagnostics. */
export function selectStages(graph: StageGraph, selection: Selection): { selected: Set<string>; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const known = (flag: string, stage: string) => {
    if (graph.has(stage)) return true;
    diagnostics.push({ location: { origin: `${flag} ${stage}` }, message: `no stage named "${stage}"${didYouMean(stage, graph.keys())}` });
    return false;
  };
  let selected = new Set(graph.keys());
  const intersect = (other: Set<string>) => {
    selected = new Set([...selected].filter((stage) => other.has(stage)));
  };
  if (selection.only) {
    const only = selection.only.filter((stage) => known('--only', stage));
    intersect(new Set(only));
  }
  if (selection.from && known('--from', selection.from)) {
    const dependents = new Map<string, string[]>();
    for (const [stage, needs] of graph) for (const need of needs) dependents.set(need, [...(dependents.get(need) ?? []), stage]);
    intersect(closure(selection.from, (stage) => dependents.get(stage) ?? []));
  }
  if (selection.until && known('--until', selection.until)) {
    intersect(closure(selection.until, (stage) => graph.get(stage) ?? []));
  }
  return { selected, diagnostics };
}
