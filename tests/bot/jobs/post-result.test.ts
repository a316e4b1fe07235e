import sharp from 'sharp';
import { beforeAll, describe, expect, test } from 'vitest';
import type { Outbox } from '../../../bot/jobs/outbox.js';
import { PostResult } from '../../../bot/jobs/post-result.js';
import type { MessageBody } from '../../../bot/jobs/render.js';
import type { JobResult } from '../../../core/generation.js';
import type { Delivered, StoredJob } from '../../../core/ports.js';
import { silent, storedJob } from './doubles.js';

const RESULT: JobResult = {
  backend: 'a1111',
  seed: 1,
  width: 64,
  height: 64,
  imageKeys: ['img:0', 'img:1'],
  runMs: 1200,
  costUsd: 0,
  attempts: [],
};

let png: Buffer;
beforeAll(async () => {
  png = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 40, b: 40 } } })
    .png()
    .toBuffer();
});
const images = () => [png, png];

function setup(o: { sendFails?: boolean; inChannel?: false | 'gone' | 'expired'; stored?: (Buffer | null)[]; limit?: number } = {}) {
  const calls: string[] = [];
  const bodies: string[] = [];
  const delivered: { id: string; messageId: string | null; extra: readonly string[] }[] = [];
  const outbox: Pick<Outbox, 'send' | 'sendMore' | 'pointToResult'> = {
    async send(_job: StoredJob, body: MessageBody) {
      calls.push(`send ${body.attachments.map((a) => a.filename).join(',')}`);
      bodies.push(body.content);
      if (o.sendFails) throw new Error('Discord is down');
      return { id: 'm1', inChannel: o.inChannel ?? false };
    },
    async sendMore(_job: StoredJob, body: MessageBody, _files, n: number) {
      calls.push(`more ${n} ${body.attachments.map((a) => a.filename).join(',')}`);
      return `m${n + 1}`;
    },
    async pointToResult(_job: StoredJob, replyId: string, resultId: string) {
      calls.push(`point ${replyId} → ${resultId}`);
    },
  };
  const store = {
    released: [] as string[],
    markCalls: 0,
    async markDelivered(batch: readonly Delivered[]) {
      store.markCalls++;
      for (const d of batch) delivered.push({ id: d.jobId, messageId: d.messageId, extra: d.extraIds ?? [] });
    },
    async releaseDelivery(id: string) {
      store.released.push(id);
    },
  };
  const results = {
    forgotten: [] as string[],
    async get() {
      return null;
    },
    async getMany(keys: readonly string[]) {
      return o.stored ?? keys.map(() => png);
    },
    async forget(jobs: readonly { jobId: string }[]) {
      results.forgotten.push(...jobs.map((j) => j.jobId));
    },
  };
  const post = new PostResult({ store, results, outbox, log: silent, now: () => Date.now() });
  const job = (over: Partial<StoredJob> = {}) =>
    storedJob({
      status: 'succeeded',
      result: RESULT,
      request: { ...storedJob().request, count: 2 },
      interaction: { ...storedJob().interaction, uploadLimitBytes: o.limit ?? 10_000_000 },
      ...over,
    });
  return { post, calls, bodies, delivered, store, results, job };
}

describe('posting a settled job', () => {
  test('a success is posted once, marked delivered with its message id, and its images are dropped from Redis', async () => {
    const { post, calls, delivered, results, job } = setup();
    await post.post(job(), images());
    await post.drain();
    expect(calls).toEqual(['send grid.webp,image-1.png,image-2.png']);
    expect(delivered).toEqual([{ id: job().id, messageId: 'm1', extra: [] }]);
    expect(results.forgotten).toEqual([job().id]);
  });

  test('files over the upload limit continue in follow-ups whose ids are kept with the result', async () => {
    const { post, calls, delivered, job } = setup({ limit: png.length + 10 });
    await post.post(job(), images());
    await post.drain();
    expect(calls[0]).toMatch(/^send grid\.webp/);
    expect(calls.filter((c) => c.startsWith('more'))).toHaveLength(2);
    expect(delivered[0]!.extra).toEqual(['m2', 'm3']);
  });

  test('a post that fails is released for the next sweep and never marked delivered', async () => {
    const { post, delivered, store, job } = setup({ sendFails: true });
    await post.post(job(), images());
    await post.drain();
    expect(delivered).toEqual([]);
    expect(store.released).toEqual([job().id]);
  });

  test('a result posted in the channel after the token expired turns the old reply into a pointer to it', async () => {
    const { post, calls, job } = setup({ inChannel: 'expired' });
    await post.post(job({ replyMessageId: 'reply-7' }), images());
    expect(calls.at(-1)).toBe('point reply-7 → m1');
  });

  test('images gone from Redis by the time a restarted bot posts: the member is told they expired', async () => {
    const { post, calls, bodies, job } = setup({ stored: [png, null] });
    await post.post(job(), null);
    expect(calls).toEqual(['send ']);
    expect(bodies[0]).toContain('the result expired before it could be posted.');
  });

  test('a failure is posted as its reason, with nothing attached', async () => {
    const { post, calls, bodies, delivered, job } = setup();
    await post.post(job({ status: 'failed', result: null, errorCode: 'rejected', errorMessage: null }), null);
    await post.drain();
    expect(calls).toEqual(['send ']);
    expect(bodies[0]).toContain('the image backend refused the request.');
    expect(delivered[0]!.messageId).toBe('m1');
  });

  test('a lone job is marked delivered at once; the jobs posted while a mark is under way are marked together next', async () => {
    const { post, store, delivered, results, job } = setup();
    const ids = ['00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b', '00000000-0000-4000-8000-00000000000c'];
    // One image each: nothing to grid.
    const single = (id: string) => job({ id, request: { ...storedJob().request, count: 1 }, result: { ...RESULT, imageKeys: ['img:0'] } });
    const batches: string[][] = [];
    const mark = store.markDelivered.bind(store);
    store.markDelivered = async (batch) => {
      batches.push(batch.map((d) => d.jobId));
      await new Promise((r) => setTimeout(r, 50));
      await mark(batch);
    };
    const first = post.post(single(ids[0]!), [png]);
    await new Promise((r) => setTimeout(r, 10));
    await Promise.all([first, ...ids.slice(1).map((id) => post.post(single(id), [png]))]);
    await post.drain();
    expect(batches).toEqual([[ids[0]], [ids[1], ids[2]]]);
    expect(delivered.map((d) => d.id)).toEqual(ids);
    expect(results.forgotten).toEqual(ids);
  });
});
