import { ButtonStyle, ComponentType, type APIActionRowComponent, type APIButtonComponent, type APIEmbed } from 'discord.js';
import { encodeCustomId } from '../core/custom-id.js';
import type { GenerationRequest, JobProgress, JobResult } from '../core/generation.js';
import { failureText, text } from '../core/messages.js';
import { quoteUserText } from './replies.js';

/** JSON bodies for the one message a job lives in: queued → progress → result or failure. */
export interface MessageBody {
  content: string;
  embeds: APIEmbed[];
  components: APIActionRowComponent<APIButtonComponent>[];
  attachments: { id: number; filename: string; description?: string }[];
  allowed_mentions: { parse: [] ; users?: string[] };
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

export function cancelRow(jobId: string): APIActionRowComponent<APIButtonComponent> {
  return row([button('Cancel', encodeCustomId({ action: 'cancel', jobId }), ButtonStyle.Danger)]);
}

/** `place` is [position, ETA], or null once a worker has the job (progress edits take over). */
export function queuedBody(jobId: string, request: GenerationRequest, place: Parameters<typeof text.queued> | null): MessageBody {
  return {
    content: `${promptLine(request)}\n${place === null ? text.starting : text.queued(...place)}`,
    embeds: [],
    components: [cancelRow(jobId)],
    attachments: [],
    allowed_mentions: { parse: [] },
  };
}

export function progressBody(jobId: string, request: GenerationRequest, p: JobProgress, withPreview: boolean): MessageBody {
  return {
    content: `${promptLine(request)}\n${text.running(p.backend, p.step, p.total, p.fraction)}`,
    embeds: withPreview ? [{ color: EMBED_COLOR, image: { url: 'attachment://preview.png' } }] : [],
    components: [cancelRow(jobId)],
    attachments: withPreview ? [{ id: 0, filename: 'preview.png', description: 'preview' }] : [],
    allowed_mentions: { parse: [] },
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export function resultBody(
  jobId: string,
  request: GenerationRequest,
  result: JobResult,
  filenames: string[],
  totalMs: number,
): MessageBody {
  const fields = [
    { name: 'Seed', value: String(result.seed), inline: true },
    { name: 'Size', value: `${result.width}×${result.height}`, inline: true },
    { name: 'Backend', value: result.backend, inline: true },
    { name: 'Steps', value: String(request.steps), inline: true },
    { name: 'Guidance', value: String(request.guidance), inline: true },
    { name: 'Preset', value: request.preset, inline: true },
    { name: 'Time', value: `${seconds(totalMs)} (generation ${seconds(result.runMs)})`, inline: true },
    { name: 'Cost', value: `$${result.costUsd.toFixed(4)}`, inline: true },
  ];
  if (request.negative) fields.unshift({ name: 'Negative prompt', value: quoteUserText(request.negative, 1000), inline: false });
  const embeds: APIEmbed[] = [
    {
      color: EMBED_COLOR,
      description: quoteUserText(request.prompt, 4000),
      fields,
      image: { url: `attachment://${filenames[0]}` },
      footer: { text: `job ${jobId}` },
    },
  ];
  return {
    content: '',
    embeds,
    components: [
      row([
        button('Reroll', encodeCustomId({ action: 'reroll', jobId }), ButtonStyle.Primary),
        button('Info', encodeCustomId({ action: 'info', jobId })),
        button('Delete', encodeCustomId({ action: 'delete', jobId }), ButtonStyle.Danger),
      ]),
    ],
    attachments: filenames.map((filename, id) => ({ id, filename })),
    allowed_mentions: { parse: [] },
  };
}

export function failureBody(request: GenerationRequest | null, code: string, message: string | null): MessageBody {
  const reason = message ?? failureText[code] ?? failureText.all_backends_failed!;
  const body = code === 'cancelled' ? text.cancelled : text.failed(reason);
  return {
    content: request ? `${promptLine(request)}\n${body}` : body,
    embeds: [],
    components: [],
    attachments: [],
    allowed_mentions: { parse: [] },
  };
}
