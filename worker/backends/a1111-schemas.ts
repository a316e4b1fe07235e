import { z } from 'zod';

/** `POST /sdapi/v1/txt2img|img2img` response: base64 images and a JSON-encoded info string. */
export const generateResponseSchema = z.object({
  images: z.array(z.string()),
  info: z.string().optional(),
});

export const infoSchema = z.object({ seed: z.number().optional(), all_seeds: z.array(z.number()).optional() }).loose();

/** `GET /sdapi/v1/progress`. */
export const progressSchema = z.object({
  progress: z.number(),
  state: z
    .object({
      job_count: z.number().optional(),
      sampling_step: z.number().optional(),
      sampling_steps: z.number().optional(),
      interrupted: z.boolean().optional(),
    })
    .loose(),
  current_image: z.string().nullable().optional(),
});
export type A1111Progress = z.infer<typeof progressSchema>;

export const upscaleResponseSchema = z.object({ image: z.string() });
