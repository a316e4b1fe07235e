import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterEach, describe, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, GUILD_ID, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

function webhookEdits(s: System, token: string) {
  return s.discord.requests.filter((r) => r.method === 'PATCH' && r.path.includes(`/${token}/messages/@original`));
}

describe('/imagine end to end', () => {
  test('answers within 3 s with the job’s place and a Cancel button, shows progress, then posts a decodable image with its details', async ({
    db,
    redisPrefix,
  }) => {
    // 30 steps × 100 ms outlasts the 1.5 s edit interval, so at least one progress edit is due.
    sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 100 } });
    const i = await sys.imagine({ prompt: 'a lighthouse at dusk', steps: 30, seed: 77 });
    const first = await i.waitForCallback();
    expect(first.at - i.createdAt).toBeLessThan(3000);
    // Admitted at once: the first answer is the public message with the place, not a deferral to edit.
    expect([first.type, first.data.flags ?? 0]).toEqual([4, 0]);
    expect(first.data.content).toMatch(/Queued|Starting/);
    expect(JSON.stringify(first.data.components)).toContain('Cancel');
    const msg = await sys.finalReply(i);
    const callbacks = sys.discord.requests.filter((r) => r.path.endsWith(`/${i.token}/callback`));
    expect(callbacks).toHaveLength(1);
    const edits = webhookEdits(sys, i.token).map((r) => String(r.json?.content ?? ''));
    expect(edits.some((c) => /Generating on a1111: step \d+\/30/.test(c))).toBe(true);
    const image = msg.attachments.find((a) => a.filename === 'image-1.png')!;
    const meta = await sharp(image.data).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 1024, height: 1024 });
    const embed = msg.embeds[0];
    expect(embed.description).toBe('a lighthouse at dusk');
    const fields = Object.fromEntries(embed.fields.map((f: { name: string; value: string }) => [f.name, f.value]));
    expect(fields).toMatchObject({ Seed: '77', Size: '1024×1024', Backend: 'a1111' });
    expect(fields.Time).toMatch(/s/);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(job.status).toBe('succeeded');
    expect(job.deliveredAt).not.toBeNull();
    expect(sys.discord.unhandled).toEqual([]);
  });

  test("a job is queued while Discord's answer to the acknowledgement is on its way, and its reply is edited only once that answer is in", async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    // Discord takes the acknowledgement at once, its answer crosses a slow network.
    sys.discord.slowNext({ method: 'POST', pathPrefix: '/interactions/', count: 1, ms: 700 });
    const i = await sys.imagine({ prompt: 'a quick one', steps: 2 });
    const msg = await sys.finalReply(i);
    const ack = sys.discord.requests.find((r) => r.method === 'POST' && r.path.endsWith(`/${i.token}/callback`))!;
    const boxCall = sys.a1111.requests.find((r) => r.path === '/sdapi/v1/txt2img')!;
    // The box had the job before the bot heard Discord's answer: queueing did not wait for it.
    expect(boxCall.at).toBeLessThan(ack.answeredAt!);
    // Nothing touched the reply before the answer: no edit can race the acknowledgement.
    const firstEdit = Math.min(...webhookEdits(sys, i.token).map((r) => r.at));
    expect(firstEdit).toBeGreaterThanOrEqual(ack.answeredAt!);
    expect(msg.attachments.map((a) => a.filename)).toContain('image-1.png');
  });

  test('a first answer that is late gives way to a deferral in time; the place is then its first edit and the result its last', async ({
    db,
    redisPrefix,
  }) => {
    // The deadline at once: the deferral leaves before the job is even queued.
    sys = await System.start({ db, redisPrefix, botOverrides: { firstAnswerDeadlineMs: 0 } });
    const i = await sys.imagine({ prompt: 'a late answer', steps: 2 });
    const msg = await sys.finalReply(i);
    const callbacks = sys.discord.requests.filter((r) => r.path.endsWith(`/${i.token}/callback`));
    expect(callbacks.map((r) => r.json.type)).toEqual([5]);
    const shown = sys.replyHistory(i);
    expect(shown[0]!.content).toMatch(/Queued|Starting/);
    expect(shown.at(-1)!.final).toBe(true);
    expect(shown.filter((e) => e.final)).toHaveLength(1);
    expect(msg.attachments.map((a) => a.filename)).toContain('image-1.png');
  });

  test('aspect, seed and count reach the GPU box as width/height in multiples of 64, seed and batch size', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const i = await sys.imagine({ prompt: 'wide shot', aspect: '16:9', seed: 1234, count: 2, steps: 4 });
    const msg = await sys.finalReply(i);
    const body = sys.a1111.requests.find((r) => r.path === '/sdapi/v1/txt2img')!.json;
    expect(body).toMatchObject({ width: 1344, height: 768, seed: 1234, batch_size: 2, steps: 4, prompt: 'wide shot' });
    const images = msg.attachments.filter((a) => a.filename.startsWith('image-'));
    expect(images).toHaveLength(2);
    for (const a of images) expect(await sharp(a.data).metadata()).toMatchObject({ width: 1344, height: 768 });
  });

  test('the daily limit refuses the request that would exceed it, privately, and nothing runs', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, env: { DEFAULT_DAILY_IMAGES: '2' } });
    await sys.finalReply(await sys.imagine({ prompt: 'first', count: 2, steps: 2 }));
    const second = await sys.imagine({ prompt: 'second', steps: 2 });
    // At once, or after a public deferral when a busy machine admits slowly: the member alone reads it.
    const refusal = await sys.answerOf(second);
    expect(refusal.flags & 64).toBe(64);
    expect(refusal.content).toContain('You have used 2 of your 2 images today');
    expect(refusal.content).toContain('00:00 UTC');
    expect(sys.a1111.generations).toBe(1);
    expect(await db.prisma.job.count()).toBe(1);
  });

  test('ten parallel requests from a member with three images left: exactly three run', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, env: { DEFAULT_DAILY_IMAGES: '3', MAX_QUEUED_PER_USER: '20' } });
    const all = await Promise.all(Array.from({ length: 10 }, (_, n) => sys!.imagine({ prompt: `cat ${n}`, steps: 2 })));
    const seen = await Promise.all(all.map((i) => sys!.answerOf(i, 20_000)));
    // Refusals reach the member alone (at once, or after a public deferral when admission is slow); admitted jobs answer in public.
    expect(seen.filter((m) => (m.flags & 64) === 64 && m.content.includes('of your 3 images'))).toHaveLength(7);
    const done = await Promise.all(all.filter((_, n) => (seen[n]!.flags & 64) === 0).map((i) => sys!.finalReply(i)));
    expect(done).toHaveLength(3);
    for (const m of done) expect(m.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(await db.prisma.job.count()).toBe(3);
    expect(sys.a1111.generations).toBe(3);
    const usage = await db.prisma.memberUsage.findFirstOrThrow();
    expect(usage.images).toBe(3);
  });

  test('a job the queue cannot take is refunded and the member alone is told in the first answer; the channel keeps nothing', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    // The shared queue's priority set is not a sorted set: queueing fails after the job was admitted.
    const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
    await redis.set(`${redisPrefix}:generate:prioritized`, 'not a sorted set');
    redis.disconnect();
    const i = await sys.imagine({ prompt: 'nowhere to go', steps: 2 });
    // Nothing was sent before queueing failed: the refusal is the first answer, private.
    const cb = await i.waitForCallback();
    expect([cb.type, cb.data.flags & 64]).toEqual([4, 64]);
    const told = await sys.answerOf(i);
    expect(told.flags & 64).toBe(64);
    expect(told.content).toContain('queue is unavailable');
    expect(sys.publicTraces(i.payload.channel_id)).toEqual([]);
    const job = await db.prisma.job.findFirstOrThrow();
    expect([job.status, job.errorCode, job.deliveredAt !== null]).toEqual(['failed', 'queue_unavailable', true]);
    expect(await db.prisma.memberUsage.findFirstOrThrow()).toMatchObject({ images: 0, inFlight: 0 });
  });

  test('a GPU box that is down: a clear failure, the quota refunded', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, env: { A1111_URL: 'http://127.0.0.1:9' } });
    const i = await sys.imagine({ prompt: 'doomed', steps: 2 });
    const msg = await sys.finalReply(i, 30_000);
    expect(msg.content).toContain('every image backend is down or busy');
    expect(msg.content).toContain('refunded');
    const job = await db.prisma.job.findFirstOrThrow();
    expect(job.status).toBe('failed');
    const usage = await db.prisma.memberUsage.findFirstOrThrow();
    expect(usage).toMatchObject({ images: 0, inFlight: 0 });
  });

  test('a 5000-character prompt gets a private error at once and queues nothing', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const i = await sys.imagine({ prompt: 'p'.repeat(5000) });
    const cb = await i.waitForCallback();
    expect(cb.type).toBe(4);
    expect(cb.data.flags & 64).toBe(64);
    expect(cb.data.content).toContain('the limit is 1500');
    expect(await db.prisma.job.count()).toBe(0);
  });

  test('@everyone in a prompt is echoed with mentions disabled in every message', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const i = await sys.imagine({ prompt: '@everyone look <@&4444444444444444444> here', steps: 2 });
    await sys.finalReply(i);
    const echoes = sys.discord.requests.filter((r) => JSON.stringify(r.json ?? '').includes('everyone'));
    expect(echoes.length).toBeGreaterThan(1);
    // The first answer carries its message under `data`.
    for (const r of echoes) expect((r.path.endsWith('/callback') ? r.json.data : r.json).allowed_mentions).toEqual({ parse: [] });
  });

  test('a prompt with a masked link or a heading is echoed as the text typed, never as a disguised link or a heading', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    const i = await sys.imagine({ prompt: '# FREE NITRO\n[claim here](https://evil.example/x) a cat', steps: 2 });
    const result = await sys.finalReply(i);
    const shown = [
      result.content,
      ...result.embeds.flatMap((e) => [e.title ?? '', e.description ?? '', ...(e.fields ?? []).map((f: { value: string }) => f.value)]),
    ].join('\n');
    expect(shown).toContain('claim here');
    // Unescaped, Discord renders a clickable "claim here" pointing anywhere, and a big heading.
    expect(shown).not.toMatch(/(?<!\\)\[claim here(?<!\\)\]\(/);
    expect(shown).not.toMatch(/^# FREE/m);
  });

  test('/quota tells a member what is used and left today', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, env: { DEFAULT_DAILY_IMAGES: '5' } });
    await sys.finalReply(await sys.imagine({ prompt: 'one', count: 2, steps: 2 }));
    const q = await sys.discord.slashCommand({ name: 'quota', user: ALICE, guildId: GUILD_ID });
    const reply = await sys.discord.waitFor(() => (q.original()?.content ? q.original() : undefined));
    expect(reply.flags & 64).toBe(64);
    expect(reply.content).toContain('2 of 5 images used, 3 left');
    expect(reply.content).toContain('00:00 UTC');
  });

  test('/quota lists queued jobs with their place in the queue', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    for (const [n, user] of [BOB, ALICE, ALICE].entries()) {
      const i = await sys.imagine({ prompt: `waiting ${n + 1}`, steps: 2, user });
      await sys.discord.waitFor(() => i.original()?.content.includes('Queued') || undefined);
    }
    const q = await sys.discord.slashCommand({ name: 'quota', user: ALICE, guildId: GUILD_ID });
    const reply = await sys.discord.waitFor(() => (q.original()?.content ? q.original() : undefined));
    // Bob's job is first; Alice's two follow it.
    expect(reply.content).toContain('• queued, position 2: waiting 2');
    expect(reply.content).toContain('• queued, position 3: waiting 3');
    expect(reply.content).not.toContain('waiting 1');
  });
});

describe('upload limits', () => {
  test('a result larger than the channel upload limit is delivered under it (WebP/JPEG), never a 413', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix });
    const limit = 2048;
    const i = await sys.imagine({ prompt: 'a detailed city', steps: 2, count: 2, attachmentSizeLimit: limit });
    // Grid plus two images cannot share one message under this limit: they arrive in follow-ups.
    const messages = await sys.resultMessages(i, 2);
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) expect(m.attachments.reduce((n, a) => n + a.size, 0)).toBeLessThanOrEqual(limit);
    const images = messages.flatMap((m) => m.attachments).filter((a) => a.filename.startsWith('image-'));
    for (const a of images) {
      expect(a.size).toBeLessThanOrEqual(limit);
      expect(a.filename).not.toMatch(/\.png$/);
      expect((await sharp(a.data).metadata()).width).toBeGreaterThan(0);
    }
    expect(sys.discord.requests.filter((r) => r.status === 413)).toEqual([]);
  });
});
