/**
 * Minimal `multipart/form-data` parser (enough for undici's FormData as sent by @discordjs/rest),
 * plus media sniffing for attachment metadata.
 * @module
 */

/** One parsed part. */
export interface MultipartPart {
  name: string;
  filename?: string;
  contentType?: string;
  data: Buffer;
}

/** Extracts the boundary from a Content-Type header, or undefined when not multipart. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^multipart\/form-data/i.test(contentType)) return undefined;
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m?.[1] ?? m?.[2];
}

// undici escapes `"`, CR and LF in names as %22, %0D, %0A (WHATWG form-data encoding).
function unescapeName(s: string): string {
  return s.replace(/%22/g, '"').replace(/%0D/gi, '\r').replace(/%0A/gi, '\n');
}

function dispositionParam(header: string, key: string): string | undefined {
  const star = new RegExp(`;\\s*${key}\\*=(?:UTF-8'')?([^;]+)`, 'i').exec(header);
  if (star?.[1]) return decodeURIComponent(star[1].trim());
  const quoted = new RegExp(`;\\s*${key}="((?:[^"\\\\]|\\\\.)*)"`, 'i').exec(header);
  if (quoted?.[1] !== undefined) return unescapeName(quoted[1]);
  const bare = new RegExp(`;\\s*${key}=([^;\\s]+)`, 'i').exec(header);
  return bare?.[1];
}

/** Parses a multipart body. Throws on a malformed body. */
export function parseMultipart(body: Buffer, boundary: string): MultipartPart[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let pos = body.indexOf(delimiter);
  if (pos < 0) throw new Error('multipart: boundary not found');
  for (;;) {
    pos += delimiter.length;
    // `--` after a delimiter marks the end of the body.
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) break;
    if (body[pos] === 0x0d && body[pos + 1] === 0x0a) pos += 2;
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd < 0) throw new Error('multipart: unterminated part headers');
    const headers = body.subarray(pos, headerEnd).toString('utf8').split('\r\n');
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4);
    if (next < 0) throw new Error('multipart: missing closing boundary');
    const data = Buffer.from(body.subarray(headerEnd + 4, next));
    let disposition = '';
    let contentType: string | undefined;
    for (const line of headers) {
      const idx = line.indexOf(':');
      const key = line.slice(0, idx).trim().toLowerCase();
      const value = line.slice(idx + 1).trim();
      if (key === 'content-disposition') disposition = value;
      else if (key === 'content-type') contentType = value;
    }
    const name = dispositionParam(disposition, 'name');
    if (name === undefined) throw new Error('multipart: part without a name');
    const filename = dispositionParam(disposition, 'filename');
    parts.push({ name, data, ...(filename === undefined ? {} : { filename }), ...(contentType ? { contentType } : {}) });
    pos = next + 2;
  }
  return parts;
}

/** Width/height of a PNG (IHDR) or GIF, else undefined. */
export function imageSize(data: Buffer): { width: number; height: number } | undefined {
  const png = data.length >= 24 && data.readUInt32BE(0) === 0x89504e47 && data.toString('ascii', 12, 16) === 'IHDR';
  if (png) return { width: data.readUInt32BE(16), height: data.readUInt32BE(20) };
  if (data.length >= 10 && data.toString('ascii', 0, 3) === 'GIF') {
    return { width: data.readUInt16LE(6), height: data.readUInt16LE(8) };
  }
  return undefined;
}

const EXT_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  txt: 'text/plain; charset=utf-8',
  json: 'application/json; charset=utf-8',
  mp4: 'video/mp4',
};

/** Content type as Discord reports it: the sent type, else guessed from the extension. */
export function attachmentContentType(filename: string, sent: string | undefined): string | undefined {
  if (sent && sent !== 'application/octet-stream') return sent;
  const ext = filename.split('.').pop()?.toLowerCase() ?? '';
  return EXT_TYPES[ext] ?? sent;
}
