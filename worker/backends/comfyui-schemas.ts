import { z } from 'zod';

/** `POST /prompt` 200. */
export const promptResponseSchema = z.object({
  prompt_id: z.string().min(1),
  number: z.number().optional(),
  node_errors: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
});

const validationErrorSchema = z.object({ type: z.string(), message: z.string(), details: z.string().optional() }).loose();

/** `POST /prompt` 400: structured error (older builds: a plain string) plus per-node errors. */
export const promptErrorSchema = z.object({
  error: z.union([validationErrorSchema.extend({ extra_info: z.record(z.string(), z.unknown()).optional() }), z.string()]),
  node_errors: z
    .union([
      z.record(z.string(), z.object({ errors: z.array(validationErrorSchema), class_type: z.string().optional() }).loose()),
      z.array(z.unknown()),
    ])
    .optional(),
});

/** A readable one-liner from a 400 body: error type, message and every node error. */
export function describePromptError(body: z.infer<typeof promptErrorSchema>): string {
  const e = body.error;
  const head = typeof e === 'string' ? e : [e.type, e.message, e.details].filter(Boolean).join(': ');
  const nodes = Array.isArray(body.node_errors) ? [] : Object.entries(body.node_errors ?? {});
  const lines = nodes.flatMap(([id, n]) =>
    n.errors.map((x) => `node ${id} (${n.class_type ?? '?'}): ${x.type}: ${x.details ?? x.message}`),
  );
  return [head, ...lines].join('; ').replace(/\s+/g, ' ').slice(0, 500);
}

export const imageRefSchema = z.object({
  filename: z.string().min(1),
  subfolder: z.string().default(''),
  type: z.string().default('output'),
});
export type ComfyImageRef = z.infer<typeof imageRefSchema>;

const historyMessageSchema = z.tuple([z.string(), z.unknown()]).rest(z.unknown());

/** One `GET /history/{id}` entry; only what we use is required. */
export const historyEntrySchema = z
  .object({
    outputs: z.record(z.string(), z.object({ images: z.array(imageRefSchema).optional() }).loose()),
    status: z
      .object({ status_str: z.string(), completed: z.boolean(), messages: z.array(historyMessageSchema).optional() })
      .loose()
      .optional(),
  })
  .loose();
/** `GET /history/{id}`: `{}` until the prompt is done. */
export const historySchema = z.record(z.string(), historyEntrySchema);
export type ComfyHistoryEntry = z.infer<typeof historyEntrySchema>;

/** `POST /upload/image`. */
export const uploadResponseSchema = z
  .object({ name: z.string().min(1), subfolder: z.string().default(''), type: z.string().optional() })
  .loose();

/** `GET /queue`: entries are `[number, prompt_id, graph, extra_data, outputs]`. */
export const queueSchema = z.object({
  queue_running: z.array(z.tuple([z.number(), z.string()]).rest(z.unknown())),
  queue_pending: z.array(z.tuple([z.number(), z.string()]).rest(z.unknown())),
});

/** `GET /system_stats`. */
export const systemStatsSchema = z.object({
  system: z.object({ comfyui_version: z.string().optional() }).loose(),
  devices: z.array(
    z
      .object({ name: z.string(), type: z.string().optional(), vram_total: z.number().optional(), vram_free: z.number().optional() })
      .loose(),
  ),
});

/** `GET /object_info/CheckpointLoaderSimple`: the first element of ckpt_name's spec lists the files. */
export const checkpointInfoSchema = z.object({
  CheckpointLoaderSimple: z.object({
    input: z.object({ required: z.object({ ckpt_name: z.tuple([z.array(z.string())]).rest(z.unknown()) }).loose() }).loose(),
  }),
});

/** Every JSON frame on /ws. */
export const wsEnvelopeSchema = z.object({ type: z.string(), data: z.record(z.string(), z.unknown()) });

const promptScoped = { prompt_id: z.string().optional() };
/** The frames we act on, by type; others (status, progress_state, feature_flags, …) are ignored. */
export const wsDataSchemas = {
  execution_start: z.object(promptScoped).loose(),
  execution_cached: z.object({ ...promptScoped, nodes: z.array(z.string()) }).loose(),
  executing: z.object({ ...promptScoped, node: z.string().nullable() }).loose(),
  progress: z.object({ ...promptScoped, value: z.number(), max: z.number(), node: z.string().nullable().optional() }).loose(),
  executed: z.object({ ...promptScoped, node: z.string(), output: z.record(z.string(), z.unknown()).nullable() }).loose(),
  execution_success: z.object(promptScoped).loose(),
  execution_error: z
    .object({
      ...promptScoped,
      node_id: z.string().optional(),
      node_type: z.string().optional(),
      exception_message: z.string().optional(),
      exception_type: z.string().optional(),
    })
    .loose(),
  execution_interrupted: z.object({ ...promptScoped, node_id: z.string().optional(), node_type: z.string().optional() }).loose(),
} as const;
export type ComfyWsType = keyof typeof wsDataSchemas;

/**
 * The image inside a binary /ws frame: type 1 (PREVIEW_IMAGE: 4-byte format + bytes) or type 4
 * (PREVIEW_IMAGE_WITH_METADATA: 4-byte length + JSON + bytes). Other types and short frames → null.
 */
export function parsePreviewFrame(buf: Buffer): { image: Buffer; promptId?: string } | null {
  if (buf.length < 8) return null;
  const type = buf.readUInt32BE(0);
  if (type === 1) return buf.length > 8 ? { image: buf.subarray(8) } : null;
  if (type !== 4) return null;
  const len = buf.readUInt32BE(4);
  if (8 + len >= buf.length) return null;
  const meta = z
    .object({ prompt_id: z.string().optional() })
    .loose()
    .safeParse(safeJson(buf.subarray(8, 8 + len).toString('utf8')));
  const promptId = meta.success ? meta.data.prompt_id : undefined;
  return { image: buf.subarray(8 + len), ...(promptId ? { promptId } : {}) };
}

/** JSON.parse that yields undefined instead of throwing. */
export function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
