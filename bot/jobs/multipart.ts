import { randomBytes } from 'node:crypto';
import type { RawFile, RequestData } from 'discord.js';
import { detectFormat } from '../../core/io/image-sniff.js';

/** The part of a REST request that carries its body: JSON alone, or JSON and files. */
export type BodyOptions = Pick<RequestData, 'body' | 'passThroughBody' | 'headers'>;

// WHATWG form-data encoding of a name or filename inside the quoted header parameter.
const escapeName = (s: string): string => s.replace(/"/g, '%22').replace(/\r/g, '%0D').replace(/\n/g, '%0A');

const asBuffer = (data: RawFile['data']): Buffer =>
  Buffer.isBuffer(data)
    ? data
    : data instanceof Uint8Array
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(String(data));

const contentTypeOf = (file: RawFile, data: Buffer): string => {
  if (file.contentType) return file.contentType;
  const format = detectFormat(data);
  return format ? `image/${format}` : 'application/octet-stream';
};

/**
 * A message's body as Discord takes it. With files, one `multipart/form-data` buffer built here
 * (`files[n]` parts, then `payload_json`), sent as it is: @discordjs/rest would otherwise wrap
 * each file in a Blob inside a FormData that undici streams to the socket chunk by chunk, several
 * writes and a web stream per upload, on every job's path. The buffer is reused as is by retries.
 */
export function bodyWithFiles(body: unknown, files: readonly RawFile[]): BodyOptions {
  if (files.length === 0) return { body };
  const boundary = `imagebot-${randomBytes(12).toString('hex')}`;
  const chunks: Buffer[] = [];
  files.forEach((file, i) => {
    const data = asBuffer(file.data);
    const key = escapeName(file.key ?? `files[${i}]`);
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${key}"; filename="${escapeName(file.name)}"\r\n` +
          `Content-Type: ${contentTypeOf(file, data)}\r\n\r\n`,
      ),
      data,
      Buffer.from('\r\n'),
    );
  });
  if (body !== undefined && body !== null) {
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(body)}\r\n`,
      ),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    body: Buffer.concat(chunks),
    passThroughBody: true,
    headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` },
  };
}
