import { describe, expect, it } from 'vitest';
import { bodyWithFiles } from '../../../bot/jobs/multipart.js';

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 0x0d, 0x0a, 0x2d, 0x2d]);
const WEBP = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WEBPVP8 '), Buffer.from([9, 9])]);

/** Reads the body back with the WHATWG parser (undici's), not with the fake Discord's own. */
async function parse(o: ReturnType<typeof bodyWithFiles>): Promise<FormData> {
  const type = o.headers?.['Content-Type'];
  expect(type).toMatch(/^multipart\/form-data; boundary=/);
  return new Response(o.body as Buffer, { headers: { 'content-type': type! } }).formData();
}

describe('a message body with files (bot/jobs/multipart.ts)', () => {
  it('without files is the JSON body, left to the REST client', () => {
    const body = { content: 'hi' };
    expect(bodyWithFiles(body, [])).toEqual({ body });
  });

  it('is one multipart buffer Discord reads as files[n] and payload_json, bytes intact', async () => {
    const body = { content: 'result', attachments: [{ id: 0, filename: 'image-1.png' }] };
    const o = bodyWithFiles(body, [
      { name: 'image-1.png', data: PNG, contentType: 'image/png' },
      { name: 'grid.webp', data: WEBP },
    ]);
    expect(o.passThroughBody).toBe(true);
    expect(Buffer.isBuffer(o.body)).toBe(true);
    const form = await parse(o);
    const first = form.get('files[0]') as File;
    const second = form.get('files[1]') as File;
    expect([first.name, first.type]).toEqual(['image-1.png', 'image/png']);
    expect(Buffer.from(await first.arrayBuffer()).equals(PNG)).toBe(true);
    // No content type given: sniffed from the bytes, as @discordjs/rest would.
    expect([second.name, second.type]).toEqual(['grid.webp', 'image/webp']);
    expect(Buffer.from(await second.arrayBuffer()).equals(WEBP)).toBe(true);
    expect(JSON.parse(form.get('payload_json') as string)).toEqual(body);
  });

  it('honours an explicit key and escapes quotes and line breaks in names', () => {
    const o = bodyWithFiles({ content: '' }, [{ name: 'a"b\r\nc.png', key: 'files[7]', data: PNG }]);
    const head = (o.body as Buffer).toString('latin1', 0, 200);
    expect(head).toContain('name="files[7]"; filename="a%22b%0D%0Ac.png"');
    expect(head).not.toContain('a"b');
  });

  it('gives every body its own boundary', () => {
    const a = bodyWithFiles({}, [{ name: 'x.png', data: PNG }]);
    const b = bodyWithFiles({}, [{ name: 'x.png', data: PNG }]);
    expect(a.headers!['Content-Type']).not.toBe(b.headers!['Content-Type']);
  });
});
