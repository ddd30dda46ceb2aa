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
  const cycle = findCycle(graph);
  if (cycle) {
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

/** The first cycle found, as a closed path [a, b, c, a]; undefined for a DAG. Unknown needs are ignored. */
export function findCycle(graph: StageGraph): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (stage: string): string[] | undefined => {
    if (state.get(stage) === 'done') return undefined;
    if (state.get(stage) === 'open') return [...stack.slice(stack.indexOf(stage)), stage];
    state.set(stage, 'open');
    stack.push(stage);
    for (const next of graph.get(stage) ?? []) {
      if (!graph.has(next)) continue;
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(stage, 'done');
    return undefined;
  };
  for (const stage of graph.keys()) {
    const cycle = visit(stage);
    if (cycle) return cycle;
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
