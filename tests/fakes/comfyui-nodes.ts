/**
 * The node catalog and prompt validation of the fake ComfyUI, modelled on `execution.py`
 * (`validate_prompt` / `validate_inputs`): same error types, messages and node_errors shape.
 * @module
 */

/** One input of a node class, as INPUT_TYPES declares it. */
export type InputSpec =
  | { kind: 'link'; type: string }
  | { kind: 'INT' | 'FLOAT'; min: number; max: number; default: number }
  | { kind: 'STRING' }
  | { kind: 'BOOLEAN'; default: boolean }
  | { kind: 'combo'; options: () => string[]; custom?: (value: string) => true | string };

export interface NodeDef {
  required: Record<string, InputSpec>;
  optional?: Record<string, InputSpec>;
  outputs: string[];
  outputNode?: boolean;
  category: string;
}

/** What the catalog needs from the server: models on disk and files in input/. */
export interface CatalogContext {
  checkpoints: () => string[];
  inputFiles: () => string[];
}

export type GraphNode = { class_type: string; inputs: Record<string, unknown>; _meta?: { title?: string } };
export type Graph = Record<string, GraphNode>;

const SAMPLERS = [
  'euler',
  'euler_ancestral',
  'heun',
  'dpm_2',
  'lms',
  'dpmpp_2s_ancestral',
  'dpmpp_sde',
  'dpmpp_2m',
  'dpmpp_2m_sde',
  'dpmpp_3m_sde',
  'ddim',
  'uni_pc',
  'lcm',
];
const SCHEDULERS = ['normal', 'karras', 'exponential', 'sgm_uniform', 'simple', 'ddim_uniform', 'beta'];

const link = (type: string): InputSpec => ({ kind: 'link', type });
const int = (min: number, max: number, d: number): InputSpec => ({ kind: 'INT', min, max, default: d });
const float = (min: number, max: number, d: number): InputSpec => ({ kind: 'FLOAT', min, max, default: d });
const MAX_RES = 16384;

/** The core nodes the fake knows; anything else is `missing_node_type`. */
export function nodeCatalog(ctx: CatalogContext): Record<string, NodeDef> {
  const imageFile: InputSpec = {
    kind: 'combo',
    options: ctx.inputFiles,
    // LoadImage.VALIDATE_INPUTS: the combo list is not checked, the file is.
    custom: (v) => (ctx.inputFiles().includes(v) ? true : `Invalid image file: ${v}`),
  };
  return {
    CheckpointLoaderSimple: {
      required: { ckpt_name: { kind: 'combo', options: ctx.checkpoints } },
      outputs: ['MODEL', 'CLIP', 'VAE'],
      category: 'loaders',
    },
    CLIPTextEncode: { required: { text: { kind: 'STRING' }, clip: link('CLIP') }, outputs: ['CONDITIONING'], category: 'conditioning' },
    EmptyLatentImage: {
      required: { width: int(16, MAX_RES, 512), height: int(16, MAX_RES, 512), batch_size: int(1, 4096, 1) },
      outputs: ['LATENT'],
      category: 'latent',
    },
    KSampler: {
      required: {
        model: link('MODEL'),
        seed: int(0, 0xffffffffffffffff, 0),
        steps: int(1, 10000, 20),
        cfg: float(0, 100, 8),
        sampler_name: { kind: 'combo', options: () => SAMPLERS },
        scheduler: { kind: 'combo', options: () => SCHEDULERS },
        positive: link('CONDITIONING'),
        negative: link('CONDITIONING'),
        latent_image: link('LATENT'),
        denoise: float(0, 1, 1),
      },
      outputs: ['LATENT'],
      category: 'sampling',
    },
    VAEDecode: { required: { samples: link('LATENT'), vae: link('VAE') }, outputs: ['IMAGE'], category: 'latent' },
    VAEEncode: { required: { pixels: link('IMAGE'), vae: link('VAE') }, outputs: ['LATENT'], category: 'latent' },
    SaveImage: {
      required: { images: link('IMAGE'), filename_prefix: { kind: 'STRING' } },
      outputs: [],
      outputNode: true,
      category: 'image',
    },
    LoadImage: { required: { image: imageFile }, outputs: ['IMAGE', 'MASK'], category: 'image' },
    LoadImageMask: {
      required: { image: imageFile, channel: { kind: 'combo', options: () => ['alpha', 'red', 'green', 'blue'] } },
      outputs: ['MASK'],
      category: 'mask',
    },
    VAEEncodeForInpaint: {
      required: { pixels: link('IMAGE'), vae: link('VAE'), mask: link('MASK'), grow_mask_by: int(0, 64, 6) },
      outputs: ['LATENT'],
      category: 'latent/inpaint',
    },
    InpaintModelConditioning: {
      required: {
        positive: link('CONDITIONING'),
        negative: link('CONDITIONING'),
        vae: link('VAE'),
        pixels: link('IMAGE'),
        mask: link('MASK'),
      },
      optional: { noise_mask: { kind: 'BOOLEAN', default: true } },
      outputs: ['CONDITIONING', 'CONDITIONING', 'LATENT'],
      category: 'conditioning/inpaint',
    },
    SetLatentNoiseMask: { required: { samples: link('LATENT'), mask: link('MASK') }, outputs: ['LATENT'], category: 'latent/inpaint' },
    RepeatLatentBatch: { required: { samples: link('LATENT'), amount: int(1, 64, 1) }, outputs: ['LATENT'], category: 'latent/batch' },
  };
}

/** `/object_info/{class}` entry for a node definition. */
export function objectInfo(name: string, def: NodeDef): Record<string, unknown> {
  const spec = (s: InputSpec): unknown[] => {
    switch (s.kind) {
      case 'link':
        return [s.type];
      case 'INT':
      case 'FLOAT':
        return [s.kind, { default: s.default, min: s.min, max: s.max }];
      case 'STRING':
        return ['STRING', { multiline: true, dynamicPrompts: true }];
      case 'BOOLEAN':
        return ['BOOLEAN', { default: s.default }];
      case 'combo':
        return [s.options(), {}];
    }
  };
  const section = (r: Record<string, InputSpec>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, spec(v)]));
  return {
    input: { required: section(def.required), ...(def.optional ? { optional: section(def.optional) } : {}) },
    input_order: { required: Object.keys(def.required), ...(def.optional ? { optional: Object.keys(def.optional) } : {}) },
    output: def.outputs,
    output_is_list: def.outputs.map(() => false),
    output_name: def.outputs,
    name,
    display_name: name,
    description: '',
    python_module: 'nodes',
    category: def.category,
    output_node: def.outputNode === true,
  };
}

export interface ValidationError {
  type: string;
  message: string;
  details: string;
  extra_info: Record<string, unknown>;
}

/** `{status, body}` of a refused POST /prompt, or the output node ids of an accepted one. */
export type ValidationResult =
  | { ok: true; outputs: string[] }
  | { ok: false; status: 400; body: { error: ValidationError; node_errors: Record<string, unknown> } };

function validateNode(
  graph: Graph,
  id: string,
  catalog: Record<string, NodeDef>,
  validated: Map<string, { valid: boolean; errors: ValidationError[] }>,
) {
  const known = validated.get(id);
  if (known) return known;
  const node = graph[id]!;
  const def = catalog[node.class_type]!;
  const inputs = node.inputs ?? {};
  const errors: ValidationError[] = [];
  let valid = true;
  const all: Array<[string, InputSpec, boolean]> = [
    ...Object.entries(def.required).map(([k, v]) => [k, v, true] as [string, InputSpec, boolean]),
    ...Object.entries(def.optional ?? {}).map(([k, v]) => [k, v, false] as [string, InputSpec, boolean]),
  ];
  for (const [x, spec, required] of all) {
    if (!(x in inputs)) {
      if (required)
        errors.push({ type: 'required_input_missing', message: 'Required input is missing', details: x, extra_info: { input_name: x } });
      continue;
    }
    const val = inputs[x];
    if (Array.isArray(val)) {
      const [oId, slot] = val as [unknown, unknown];
      const other = typeof oId === 'string' ? graph[oId] : undefined;
      if (val.length !== 2 || !other || typeof slot !== 'number') {
        errors.push({
          type: 'bad_linked_input',
          message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
          details: x,
          extra_info: { input_name: x, received_value: val },
        });
        continue;
      }
      const received = catalog[other.class_type]?.outputs[slot];
      const wanted = spec.kind === 'link' ? spec.type : spec.kind;
      if (received !== wanted) {
        errors.push({
          type: 'return_type_mismatch',
          message: 'Return type mismatch between linked nodes',
          details: `${x}, ${String(received)} != ${wanted}`,
          extra_info: { input_name: x, received_type: received, linked_node: val },
        });
        continue;
      }
      if (!validateNode(graph, oId as string, catalog, validated).valid) valid = false;
      continue;
    }
    if (spec.kind === 'link') {
      errors.push({
        type: 'bad_linked_input',
        message: 'Bad linked input, must be a length-2 list of [node_id, slot_index]',
        details: x,
        extra_info: { input_name: x, received_value: val },
      });
    } else if (spec.kind === 'INT' || spec.kind === 'FLOAT') {
      const n = Number(val);
      if (typeof val === 'boolean' || val === null || !Number.isFinite(n) || (spec.kind === 'INT' && !Number.isInteger(n))) {
        const info = { input_name: x, received_value: val };
        errors.push({
          type: 'invalid_input_type',
          message: `Failed to convert an input value to a ${spec.kind} value`,
          details: `${x}, ${String(val)}`,
          extra_info: info,
        });
      } else if (n < spec.min) {
        errors.push({
          type: 'value_smaller_than_min',
          message: `Value ${n} smaller than min of ${spec.min}`,
          details: x,
          extra_info: { input_name: x, received_value: n },
        });
      } else if (n > spec.max) {
        errors.push({
          type: 'value_bigger_than_max',
          message: `Value ${n} bigger than max of ${spec.max}`,
          details: x,
          extra_info: { input_name: x, received_value: n },
        });
      }
    } else if (spec.kind === 'combo') {
      const v = String(val);
      if (spec.custom) {
        const r = spec.custom(v);
        if (r !== true)
          errors.push({
            type: 'custom_validation_failed',
            message: 'Custom validation failed for node',
            details: `${x} - ${r}`,
            extra_info: { input_name: x },
          });
        continue;
      }
      const options = spec.options();
      if (!options.includes(v)) {
        const list = options.length > 20 ? `(list of length ${options.length})` : `[${options.map((o) => `'${o}'`).join(', ')}]`;
        errors.push({
          type: 'value_not_in_list',
          message: 'Value not in list',
          details: `${x}: '${v}' not in ${list}`,
          extra_info: { input_name: x, input_config: options.length > 20 ? null : [options, {}], received_value: v },
        });
      }
    }
  }
  const result = { valid: valid && errors.length === 0, errors };
  validated.set(id, result);
  return result;
}

/** execution.validate_prompt: missing classes first, then outputs, then every output's ancestors. */
export function validatePrompt(graph: Graph, catalog: Record<string, NodeDef>): ValidationResult {
  const outputs: string[] = [];
  for (const [id, node] of Object.entries(graph)) {
    const title = node._meta?.title ?? node.class_type;
    if (typeof node.class_type !== 'string') {
      const error = {
        type: 'invalid_prompt',
        message: 'Cannot execute because a node is missing the class_type property.',
        details: `Node ID '#${id}'`,
        extra_info: {},
      };
      return { ok: false, status: 400, body: { error, node_errors: {} } };
    }
    const def = catalog[node.class_type];
    if (!def) {
      const error = {
        type: 'missing_node_type',
        message: `Node '${title}' not found. The custom node may not be installed.`,
        details: `Node ID '#${id}'`,
        extra_info: { node_id: id, class_type: node.class_type, node_title: title },
      };
      return { ok: false, status: 400, body: { error, node_errors: {} } };
    }
    if (def.outputNode) outputs.push(id);
  }
  if (outputs.length === 0) {
    return {
      ok: false,
      status: 400,
      body: { error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} }, node_errors: {} },
    };
  }
  const validated = new Map<string, { valid: boolean; errors: ValidationError[] }>();
  const good: string[] = [];
  const failedOwn: ValidationError[] = [];
  const nodeErrors: Record<string, { errors: ValidationError[]; dependent_outputs: string[]; class_type: string }> = {};
  for (const o of outputs) {
    const r = validateNode(graph, o, catalog, validated);
    if (r.valid) {
      good.push(o);
      continue;
    }
    // Only the output's own reasons reach error.details; upstream reasons only node_errors.
    failedOwn.push(...r.errors);
    for (const [nodeId, v] of validated) {
      if (v.valid || v.errors.length === 0) continue;
      nodeErrors[nodeId] ??= { errors: v.errors, dependent_outputs: [], class_type: graph[nodeId]!.class_type };
      nodeErrors[nodeId].dependent_outputs.push(o);
    }
  }
  if (good.length === 0) {
    const details = failedOwn.map((e) => `${e.message}: ${e.details}`).join('\n');
    const error = { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details, extra_info: {} };
    return { ok: false, status: 400, body: { error, node_errors: nodeErrors } };
  }
  return { ok: true, outputs: good };
}

/** Ancestors of the outputs in dependency order (inputs before the nodes that use them). */
export function executionOrder(graph: Graph, outputs: string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (id: string) => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const v of Object.values(graph[id]?.inputs ?? {})) if (Array.isArray(v) && typeof v[0] === 'string' && graph[v[0]]) visit(v[0]);
    order.push(id);
  };
  for (const o of outputs) visit(o);
  return order;
}

/** Cache key of a node: its class and inputs, with links replaced by the upstream key (like CacheKeySetInputSignature). */
export function signatures(graph: Graph, order: string[]): Map<string, string> {
  const sig = new Map<string, string>();
  for (const id of order) {
    const n = graph[id]!;
    const inputs = Object.entries(n.inputs ?? {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => [k, Array.isArray(v) && typeof v[0] === 'string' ? [sig.get(v[0]), v[1]] : v]);
    sig.set(id, JSON.stringify([n.class_type, inputs]));
  }
  return sig;
}
