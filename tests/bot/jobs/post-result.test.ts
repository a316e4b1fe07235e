import type { REST } from 'discord.js';
import { DiscordAPIError } from 'discord.js';
import sharp from 'sharp';
import { beforeAll, describe, expect, test } from 'vitest';
import { Outbox } from '../../../bot/jobs/outbox.js';
import { PostResult } from '../../../bot/jobs/post-result.js';
import type { MessageBody } from '../../../bot/jobs/render.js';
import { composeResult } from '../../../bot/jobs/result-files.js';
import type { JobResult } from '../../../core/generation.js';
import { type ImageTasks, imageTasks } from '../../../core/io/image-tasks.js';
import { inlineTasks, type ThreadPool } from '../../../core/io/thread-pool.js';
import type { Delivered, StoredJob } from '../../../core/ports.js';
import { bombPng } from '../../fixtures/png.js';
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

/** The image tasks run inline, each task handed to them (to decode) recorded in `decoded`. */
function spiedTasks(decoded: string[]): Pick<ThreadPool<ImageTasks>, 'run'> {
  const inline = inlineTasks(imageTasks);
  return { run: (task, ...args) => (decoded.push(task), inline.run(task, ...args)) };
}

function setup(
  o: {
    sendFails?: boolean | Error;
    moreFailsAt?: number;
    inChannel?: false | 'gone' | 'expired';
    stored?: (Buffer | null)[];
    limit?: number;
    /** A real outbox instead of the recording one. */
    outbox?: Outbox;
  } = {},
) {
  const calls: string[] = [];
  const bodies: string[] = [];
  const delivered: { id: string; messageId: string | null; extra: readonly string[] }[] = [];
  const outbox: Pick<Outbox, 'send' | 'sendMore' | 'pointToResult' | 'tokenAlive'> = o.outbox ?? {
    tokenAlive: () => true,
    async send(_job: StoredJob, body: MessageBody) {
      calls.push(`send ${body.attachments.map((a) => a.filename).join(',')}`);
      bodies.push(body.content);
      if (o.sendFails) throw o.sendFails instanceof Error ? o.sendFails : new Error('Discord is down');
      return { id: 'm1', inChannel: o.inChannel ?? false };
    },
    async sendMore(_job: StoredJob, body: MessageBody, _files, n: number) {
      if (n === o.moreFailsAt) throw new Error('Discord is down');
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
    deferred: [] as { id: string; tries: number; error: string }[],
    givenUp: [] as { id: string; error: string }[],
    noted: [] as { messageId: string; extra: string[] }[],
    async deferDelivery(id: string, tries: number, _at: Date, error: string) {
      store.deferred.push({ id, tries, error });
    },
    async giveUpDelivery(id: string, error: string) {
      store.givenUp.push({ id, error });
      return storedJob({ id, status: 'succeeded' });
    },
    async notePosted(_id: string, messageId: string, extra: readonly string[]) {
      store.noted.push({ messageId, extra: [...extra] });
    },
    expired: [] as string[],
    failedAs: [] as string[],
    async expireResult(id: string, failure?: { code: string; message: string }) {
      store.expired.push(id);
      store.failedAs.push(failure?.code ?? 'expired');
      return storedJob({ id, status: 'failed', errorCode: failure?.code ?? 'expired' });
    },
  };
  const undeliverable: string[] = [];
  const results = {
    forgotten: [] as string[],
    /** Each forget: one Redis command for its whole batch. */
    forgets: [] as { jobId: string; inputKeys?: readonly string[]; guildId?: string | null }[][],
    async get() {
      return null;
    },
    async getMany(keys: readonly string[]) {
      return o.stored ?? keys.map(() => png);
    },
    async forget(jobs: readonly { jobId: string; inputKeys?: readonly string[]; guildId?: string | null }[]) {
      results.forgotten.push(...jobs.map((j) => j.jobId));
      results.forgets.push([...jobs]);
    },
  };
  /** What was handed to the image threads to decode. */
  const decoded: string[] = [];
  const post = new PostResult({
    store,
    results,
    outbox,
    log: silent,
    now: () => Date.now(),
    onUndeliverable: async (j, reason) => void undeliverable.push(`${j.id} ${reason}`),
    cpu: spiedTasks(decoded),
  });
  const job = (over: Partial<StoredJob> = {}) =>
    storedJob({
      status: 'succeeded',
      result: RESULT,
      request: { ...storedJob().request, count: 2 },
      interaction: { ...storedJob().interaction, uploadLimitBytes: o.limit ?? 10_000_000 },
      ...over,
    });
  return { post, calls, bodies, delivered, store, results, job, undeliverable, decoded };
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

  test("a delivered job's input images (an /inpaint upload, its mask) are dropped with its result, in the same one command", async () => {
    const { post, results, job } = setup();
    const inputs = { image: 'p:input:j:image', mask: 'p:input:j:mask', original: 'p:input:j:original', maskFull: 'p:input:j:maskFull' };
    const inpaint = job({ request: { ...job().request, kind: 'inpaint', inputKeys: inputs } });
    await post.post(inpaint, images());
    expect(results.forgets).toEqual([
      [{ jobId: inpaint.id, imageKeys: expect.any(Array), inputKeys: Object.values(inputs), guildId: 'g1' }],
    ]);
  });

  test('a post that fails is left to a later try on the backoff schedule and never marked delivered', async () => {
    const { post, delivered, store, job, undeliverable } = setup({ sendFails: true });
    await post.post(job(), images());
    await post.drain();
    expect(delivered).toEqual([]);
    expect(store.deferred).toEqual([{ id: job().id, tries: 1, error: 'network error' }]);
    expect(undeliverable).toEqual([]);
  });

  test('a post Discord refuses for good is given up at its last try: recorded undeliverable, refunded, moderators told', async () => {
    const refused = new DiscordAPIError(
      { code: 50013, message: 'Missing Permissions' },
      50013,
      403,
      'POST',
      'http://x/channels/1/messages',
      {},
    );
    const { post, delivered, store, job, undeliverable } = setup({ sendFails: refused });
    await post.post(job({ deliveryAttempts: 3 }), images());
    expect(store.deferred).toEqual([{ id: job().id, tries: 4, error: '403 50013 Missing Permissions' }]);
    await post.post(job({ deliveryAttempts: 4 }), images());
    await post.drain();
    expect(delivered).toEqual([]);
    expect(store.givenUp).toEqual([{ id: job().id, error: '403 50013 Missing Permissions' }]);
    expect(undeliverable).toEqual([`${job().id} 403 50013 Missing Permissions`]);
  });

  test('a split result that failed half-way resumes after the last part posted: no part is posted twice', async () => {
    const first = setup({ limit: png.length + 10, moreFailsAt: 2 });
    await first.post.post(first.job(), images());
    expect(first.calls.map((c) => c.split(' ')[0])).toEqual(['send', 'more']);
    expect(first.store.noted.at(-1)).toEqual({ messageId: 'm1', extra: ['m2'] });
    const again = setup({ limit: png.length + 10 });
    await again.post.post(again.job({ resultMessageId: 'm1', resultExtraIds: ['m2'], deliveryAttempts: 1 }), images());
    await again.post.drain();
    expect(again.calls).toEqual([expect.stringMatching(/^more 2 /)]);
    expect(again.delivered[0]).toEqual({ id: again.job().id, messageId: 'm1', extra: ['m2', 'm3'] });
  });

  test('a result posted in the channel after the token expired turns the old reply into a pointer to it', async () => {
    const { post, calls, job } = setup({ inChannel: 'expired' });
    await post.post(job({ replyMessageId: 'reply-7' }), images());
    expect(calls.at(-1)).toBe('point reply-7 → m1');
  });

  test('images gone from Redis by the time a restarted bot posts: the success becomes a refunded failure first, and the member is told so', async () => {
    const { post, calls, bodies, store, job } = setup({ stored: [png, null] });
    const j = job();
    await post.post(j, null);
    expect(store.expired).toEqual([j.id]);
    expect(calls).toEqual(['send ']);
    expect(bodies[0]).toContain('the result expired before it could be posted. Your quota was refunded.');
  });

  test('images over the output pixel cap found by a restarted bot are never decoded: the success becomes a refunded failure saying why', async () => {
    // A guild's own worker rewrote its result keys after the result was checked; 36 MP each, no grid.
    const { post, bodies, store, job, decoded, delivered } = setup({ stored: [bombPng(6000), bombPng(6000)] });
    await post.post(job(), null);
    expect(decoded).toEqual([]);
    expect(store.failedAs).toEqual(['invalid_payload']);
    expect(bodies).toEqual([expect.stringMatching(/could not be made: .*6000×6000, over the 16 MP cap.*refunded/)]);
    expect(delivered.map((d) => d.id)).toEqual([job().id]);
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

describe('a job posted after the 14-minute token limit', () => {
  /** A real outbox over a Discord that records the bot-token edits of the old reply. */
  function lateOutbox() {
    const pointer: string[] = [];
    const botRest = {
      post: async () => ({ id: 'result-msg' }),
      patch: async (route: string, o: { body: { content: string } }) => {
        if (route.endsWith('/reply-msg')) pointer.push(o.body.content);
      },
    } as unknown as REST;
    return { pointer, outbox: new Outbox({ rest: botRest, botRest, log: silent, now: () => Date.now(), tokenLifetimeMs: 14 * 60_000 }) };
  }
  const late = { createdAt: new Date(Date.now() - 20 * 60_000), replyMessageId: 'reply-msg' };

  test('the old reply points at the result, worded by outcome: only a success says "Finished"', async () => {
    const cases: [Partial<StoredJob>, (Buffer | null)[] | undefined, RegExp][] = [
      [{}, undefined, /^Finished\. .* the result is posted below: https:\/\/discord\.com\/channels\/g1\/c1\/result-msg$/],
      [
        { status: 'failed', result: null, errorCode: 'all_backends_failed', errorMessage: null },
        undefined,
        /^No image could be made\. .* the reason is posted below: https:/,
      ],
      [
        { status: 'cancelled', result: null, errorCode: 'cancelled', errorMessage: null },
        undefined,
        /^Cancelled\. .* posted below: https:/,
      ],
      // Settled as a success, but its images were gone by the time it was posted: a refunded failure is posted.
      [{}, [png, null], /^No image could be made\. /],
    ];
    for (const [over, stored, want] of cases) {
      const { pointer, outbox } = lateOutbox();
      const { post, job } = setup({ outbox, ...(stored ? { stored } : {}) });
      await post.post(job({ ...late, ...over }), null);
      expect(pointer, JSON.stringify(over)).toHaveLength(1);
      expect(pointer[0], JSON.stringify(over)).toMatch(want);
    }
  });
});

describe('composing a result', () => {
  test('images over the output pixel cap are refused before anything is handed to the image threads', async () => {
    const decoded: string[] = [];
    const cpu = spiedTasks(decoded);
    // No grid from the worker, and over the upload limit: both would be decoded here.
    const job = storedJob({ status: 'succeeded', result: RESULT, interaction: { ...storedJob().interaction, uploadLimitBytes: 16 } });
    const big = bombPng(6000);
    const outcome = await composeResult(job, RESULT, [big, big], { results: { get: async () => null }, now: () => Date.now(), cpu }).then(
      () => 'composed',
      (err: unknown) => String(err),
    );
    expect({ outcome, decoded }).toEqual({ outcome: expect.stringMatching(/6000×6000, over the 16 MP cap/), decoded: [] });
  });

  test('a grid from the worker over the output limits is not used: the bot grids the checked images itself', async () => {
    const decoded: string[] = [];
    const cpu = spiedTasks(decoded);
    const withGrid = { ...RESULT, gridKey: 'img:grid' };
    const job = storedJob({ status: 'succeeded', result: withGrid, request: { ...storedJob().request, count: 2 } });
    const messages = await composeResult(job, withGrid, images(), {
      results: { get: async () => bombPng(6000) },
      now: () => Date.now(),
      cpu,
    });
    expect(decoded).toEqual(['makeGrid']);
    const grid = messages[0]!.files.find((f) => f.name === 'grid.webp')!;
    expect(await sharp(grid.data as Buffer).metadata()).toMatchObject({ format: 'webp' });
  });
});
