/**
 * A small builder for ONNX graphs over the ONNX schema's generated protobuf classes (`onnx-proto`,
 * protobufjs code generated from onnx.proto): names values, adds nodes and initializers, and
 * encodes a ModelProto. Nothing here knows about decoders; `export.ts` says what to build.
 */
import onnxProto, { type onnx as Onnx } from 'onnx-proto';

const { onnx } = onnxProto;

/** TensorProto.DataType values used here. */
export const DataType = { float: 1, int64: 7, bool: 9 } as const;
type ElementType = keyof typeof DataType;

/** A dimension: a fixed size or a symbolic name (`batch_size`). */
export type Dim = number | string;

/** ONNX Runtime refuses a protobuf model of 2 GiB or more; weights past this size go to a side file. */
export const EXTERNAL_DATA_THRESHOLD = 1024 ** 3;

export interface Attributes {
  [name: string]: number | number[] | { float: number } | Onnx.ITensorProto;
}

export class GraphBuilder {
  readonly nodes: Onnx.INodeProto[] = [];
  readonly initializers: Onnx.ITensorProto[] = [];
  readonly inputs: Onnx.IValueInfoProto[] = [];
  readonly outputs: Onnx.IValueInfoProto[] = [];
  private counter = 0;
  private readonly constants = new Map<string, string>();

  input(name: string, type: ElementType, shape: Dim[]): string {
    this.inputs.push(valueInfo(name, type, shape));
    return name;
  }

  /**
   * Makes `value` the graph output `name` by renaming the node output that produced it (an Identity
   * node would cost a copy per run: the KV cache outputs are the largest tensors of a decode step).
   * Returns `name`, which later nodes use in place of `value`.
   */
  output(value: string, name: string, type: ElementType, shape: Dim[]): string {
    const producer = this.nodes.find((n) => n.output?.includes(value));
    if (!producer || this.inputs.some((i) => i.name === value)) throw new Error(`Internal error: graph output ${name} is not a node output (${value})`);
    for (const node of this.nodes) {
      if (node.output) node.output = node.output.map((o) => (o === value ? name : o));
      if (node.input) node.input = node.input.map((i) => (i === value ? name : i));
    }
    this.outputs.push(valueInfo(name, type, shape));
    return name;
  }

  /** A float32 initializer (weights), named as given. */
  weight(name: string, values: Float32Array, dims: number[]): string {
    this.initializers.push({ name, dataType: DataType.float, dims, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
    return name;
  }

  /** An int64 constant (shapes, axes), shared between nodes that use the same values. */
  ints(values: number[], dims: number[] = [values.length]): string {
    const key = `i${dims.join('x')}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_${this.constants.size}`;
      const raw = new BigInt64Array(values.map((v) => BigInt(v)));
      this.initializers.push({ name, dataType: DataType.int64, dims, rawData: new Uint8Array(raw.buffer) });
      this.constants.set(key, name);
    }
    return name;
  }

  /** A float32 scalar constant. */
  scalar(value: number): string {
    const key = `f:${value}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_${this.constants.size}`;
      this.initializers.push({ name, dataType: DataType.float, dims: [], rawData: new Uint8Array(new Float32Array([value]).buffer) });
      this.constants.set(key, name);
    }
    return name;
  }

  /** Adds a node and returns its (first) output's name; `outputs` > 1 names the rest `_1`, `_2`... */
  op(opType: string, inputs: string[], attributes: Attributes = {}, outputs = 1): string {
    return this.opMulti(opType, inputs, attributes, outputs)[0] as string;
  }

  opMulti(opType: string, inputs: string[], attributes: Attributes = {}, outputs = 1): string[] {
    const id = this.counter++;
    const names = Array.from({ length: outputs }, (_, i) => `${opType.toLowerCase()}_${id}${i === 0 ? '' : `_${i}`}`);
    this.nodes.push({ opType, input: inputs, output: names, name: `${opType}_${id}`, attribute: Object.entries(attributes).map(([n, v]) => attribute(n, v)) });
    return names;
  }

  /**
   * Encodes the model. Initializers are stored inline unless their total size reaches
   * `externalThreshold`: then every weight's bytes go to `externalFile` (ONNX external data, as
   * Optimum writes `model.onnx_data`), and `external` returns what to write there.
   */
  encode(options: { opset: number; producer: string; docString?: string; externalFile: string; externalThreshold?: number }): { model: Uint8Array; external?: Uint8Array[] } {
    const total = this.initializers.reduce((sum, t) => sum + (t.rawData?.byteLength ?? 0), 0);
    let external: Uint8Array[] | undefined;
    let initializers = this.initializers;
    if (total >= (options.externalThreshold ?? EXTERNAL_DATA_THRESHOLD)) {
      external = [];
      let offset = 0;
      initializers = this.initializers.map((t) => {
        const bytes = t.rawData as Uint8Array;
        if (t.dataType !== DataType.float || bytes.byteLength < 1024) return t;
        // Offsets aligned to 4 KiB so the runtime may map the file (as onnx's external-data writer does).
        const aligned = Math.ceil(offset / 4096) * 4096;
        if (aligned > offset) external!.push(new Uint8Array(aligned - offset));
        external!.push(bytes);
        offset = aligned + bytes.byteLength;
        const entries = { location: options.externalFile, offset: String(aligned), length: String(bytes.byteLength) };
        return { ...t, rawData: undefined, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData: Object.entries(entries).map(([key, value]) => ({ key, value })) };
      });
    }
    const model = onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: options.opset }],
      producerName: options.producer,
      docString: options.docString,
      graph: { name: 'main', node: this.nodes, initializer: initializers, input: this.inputs, output: this.outputs },
    });
    return { model: onnx.ModelProto.encode(model).finish(), external };
  }
}

function valueInfo(name: string, type: ElementType, shape: Dim[]): Onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: DataType[type], shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

function attribute(name: string, value: Attributes[string]): Onnx.IAttributeProto {
  const Type = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') return { name, type: Type.INT, i: value };
  if (Array.isArray(value)) return { name, type: Type.INTS, ints: value };
  if ('float' in value) return { name, type: Type.FLOAT, f: value.float };
  return { name, type: Type.TENSOR, t: value };
}
