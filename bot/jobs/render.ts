import { type APIActionRowComponent, type APIButtonComponent, type APIEmbed, ButtonStyle, ComponentType } from 'discord.js';
import type { ReplyBody } from '../../commands/context.js';
import { quoteUserText } from '../../commands/replies.js';
import { encodeCustomId } from '../../core/custom-id.js';
import { isFailureCode } from '../../core/failures.js';
import type { GenerationRequest, JobProgress, JobResult } from '../../core/generation.js';
import { buttonText, failureText, modelText, ranText, text } from '../../core/messages.js';
import { resultActions } from '../../core/result-actions.js';

/** JSON bodies for the one message a job lives in: queued → progress → result or failure. */
export interface MessageBody extends ReplyBody {
  attachments: { id: number; filename: string; description?: string }[];
}

const EMBED_COLOR = 0x5865f2;

function promptLine(request: GenerationRequest): string {
  return `**${quoteUserText(request.prompt, 1500)}**`;
}

function button(
  label: string,
  customId: string,
  style: ButtonStyle.Primary | ButtonStyle.Secondary | ButtonStyle.Success | ButtonStyle.Danger = ButtonStyle.Secondary,
): APIButtonComponent {
  return { type: ComponentType.Button, style, label, custom_id: customId };
}

function row(buttons: APIButtonComponent[]): APIActionRowComponent<APIButtonComponent> {
  return { type: ComponentType.ActionRow, components: buttons };
}

function cancelRow(jobId: string): APIActionRowComponent<APIButtonComponent> {
  return row([button(buttonText.labels.cancel, encodeCustomId({ action: 'cancel', jobId }), ButtonStyle.Danger)]);
}

/**
 * `place` is [position, ETA], 'unplaced' while its place could not be read, or null once a worker
 * has the job (progress edits take over);
 * `route`, the paid provider the job may go to and its price, shown before it runs.
 */
export function queuedBody(
  jobId: string,
  request: GenerationRequest,
  place: Parameters<typeof text.queued> | 'unplaced' | null,
  route?: Parameters<typeof text.route>[0],
): MessageBody {
  const line = place === null ? text.starting : place === 'unplaced' ? text.queuedUnplaced : text.queued(...place);
  return {
    content: `${promptLine(request)}\n${line}${route ? `\n${text.route(route)}` : ''}`,
    embeds: [],
    components: [cancelRow(jobId)],
    attachments: [],
    allowed_mentions: { parse: [] },
  };
}

/** What a job's progress says: its turn on the GPU box while it waits there, else the step, and where it went if not the box. */
function progressLine(p: JobProgress): string {
  if (p.waiting) {
    const w = p.waiting;
    const start = w.startLowMs !== undefined && w.startHighMs !== undefined ? { lowMs: w.startLowMs, highMs: w.startHighMs } : null;
    const fallback = p.fallback ? `\n${text.route({ ...p.fallback, when: p.fallback.overflowAfterS > 0 ? 'overflow' : 'failover' })}` : '';
    return text.waitingForBox(w.ahead, start) + fallback;
  }
  const routed = p.route ? `\n${text.routed(p.route.reason, p.route.backend, p.route.usd)}` : '';
  return text.running(p.backend, p.step, p.total, p.fraction) + routed;
}

export function progressBody(jobId: string, request: GenerationRequest, p: JobProgress, withPreview: boolean): MessageBody {
  return {
    content: `${promptLine(request)}\n${progressLine(p)}`,
    embeds: withPreview ? [{ color: EMBED_COLOR, image: { url: 'attachment://preview.png' } }] : [],
    components: [cancelRow(jobId)],
    attachments: withPreview ? [{ id: 0, filename: 'preview.png', description: 'preview' }] : [],
    allowed_mentions: { parse: [] },
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Vary and Upscale buttons for the images a message carries (the handler reads the image from that message). */
function perImageRows(jobId: string, request: GenerationRequest, result: JobResult, indices: readonly number[]) {
  const actions = resultActions(request, result);
  const L = buttonText.labels;
  const rows: APIActionRowComponent<APIButtonComponent>[] = [];
  if (indices.length === 0) return rows;
  if (actions.vary)
    rows.push(row(indices.map((i) => button(L.vary(i, request.count), encodeCustomId({ action: 'vary', jobId, index: i })))));
  if (actions.upscale)
    rows.push(row(indices.map((i) => button(L.upscale(i, request.count), encodeCustomId({ action: 'upscale', jobId, index: i })))));
  return rows;
}

/** The files one result message carries: the grid (first message only) and full images by index. */
export interface ResultPart {
  /** Attachment file names in upload order. */
  filenames: string[];
  /** The grid's file name when this message carries it. */
  grid?: string;
  /** Which images (0-based) this message carries in full, parallel to their file names. */
  images: { index: number; filename: string }[];
}

export function resultBody(jobId: string, request: GenerationRequest, result: JobResult, part: ResultPart, totalMs: number): MessageBody {
  const ran = ranText(request, result);
  const fields = [
    { name: 'Seed', value: String(result.seed), inline: true },
    { name: 'Size', value: `${result.width}×${result.height}`, inline: true },
    { name: 'Backend', value: result.backend, inline: true },
    { name: 'Steps', value: ran.steps, inline: true },
    { name: 'Guidance', value: ran.guidance, inline: true },
    { name: 'Preset', value: request.preset, inline: true },
    { name: 'Time', value: `${seconds(totalMs)} (generation ${seconds(result.runMs)})`, inline: true },
    { name: 'Cost', value: `$${result.costUsd.toFixed(4)}`, inline: true },
  ];
  if (result.model) fields.push({ name: 'Model', value: modelText(result.model).slice(0, 1024), inline: true });
  if (result.route) fields.push({ name: 'Route', value: text.routedResult(result.route.reason, result.route.backend), inline: false });
  if (request.negative) fields.unshift({ name: 'Negative prompt', value: quoteUserText(request.negative, 1000), inline: false });
  const derived =
    request.source && (request.kind === 'img2img' || request.kind === 'upscale')
      ? `${buttonText.derivedFrom(request.kind, request.source.index)}\n`
      : '';
  const shown = part.grid ?? part.images[0]?.filename;
  const embeds: APIEmbed[] = [
    {
      color: EMBED_COLOR,
      description: derived + quoteUserText(request.prompt, 3900),
      fields,
      ...(shown ? { image: { url: `attachment://${shown}` } } : {}),
      footer: { text: `job ${jobId}` },
    },
  ];
  const actions = resultActions(request, result);
  const L = buttonText.labels;
  const main = [
    actions.reroll ? button(L.reroll, encodeCustomId({ action: 'reroll', jobId }), ButtonStyle.Primary) : null,
    actions.edit ? button(L.edit, encodeCustomId({ action: 'edit', jobId })) : null,
    button(L.info, encodeCustomId({ action: 'info', jobId })),
    button(L.delete, encodeCustomId({ action: 'delete', jobId }), ButtonStyle.Danger),
  ].filter((b): b is APIButtonComponent => b !== null);
  return {
    content: '',
    embeds,
    components: [
      row(main),
      ...perImageRows(
        jobId,
        request,
        result,
        part.images.map((i) => i.index),
      ),
    ],
    attachments: part.filenames.map((filename, id) =>
      filename === part.grid ? { id, filename, description: buttonText.gridAlt(request.count) } : { id, filename },
    ),
    allowed_mentions: { parse: [] },
  };
}

/** A follow-up message with the full images the first message had no room for, and their buttons. */
export function resultMoreBody(jobId: string, request: GenerationRequest, result: JobResult, part: ResultPart): MessageBody {
  const idx = part.images.map((i) => i.index + 1);
  return {
    content: buttonText.moreImages(Math.min(...idx), Math.max(...idx), request.count),
    embeds: [],
    components: [
      ...perImageRows(
        jobId,
        request,
        result,
        part.images.map((i) => i.index),
      ),
      row([button(buttonText.labels.delete, encodeCustomId({ action: 'delete', jobId }), ButtonStyle.Danger)]),
    ],
    attachments: part.filenames.map((filename, id) => ({ id, filename })),
    allowed_mentions: { parse: [] },
  };
}

export function failureBody(request: GenerationRequest | null, code: string, message: string | null): MessageBody {
  const reason = message ?? (isFailureCode(code) ? failureText[code] : failureText.all_backends_failed);
  const body = code === 'cancelled' ? text.cancelled : text.failed(reason);
  return {
    content: request ? `${promptLine(request)}\n${body}` : body,
    embeds: [],
    components: [],
    attachments: [],
    allowed_mentions: { parse: [] },
  };
}
