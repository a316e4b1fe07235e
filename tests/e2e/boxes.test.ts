import { afterEach, describe, expect } from 'vitest';
import type { FakeInteraction, FakeUser } from '../fakes/discord/types.js';
import { type FakeHFEndpoint, startFakeHFEndpoint } from '../fakes/huggingface.js';
import { type FakeReplicate, startFakeReplicate } from '../fakes/replicate.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, buttonId, System } from './harness.js';

let sys: System | undefined;
let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  await Promise.all(closers.map((c) => c()));
  closers = [];
});

const member = (n: number): FakeUser => ({ id: String(6100000000000000000n + BigInt(n)), username: `member${n}` });

/** Every preview image the bot attached to a job's reply while it ran. */
function previewsShown(s: System, i: FakeInteraction): Buffer[] {
  return s.discord.requests
    .filter((r) => r.method === 'PATCH' && r.path.includes(`/${i.token}/messages/@original`))
    .flatMap((r) => r.files.filter((f) => f.filename === 'preview.png').map((f) => f.data));
}

/** Every text the job's reply showed, in order. */
function repliesShown(s: System, i: FakeInteraction): string[] {
  return s.replyHistory(i).map((r) => r.content);
}

async function cloud<T extends { close(): Promise<void> }>(start: Promise<T>): Promise<T> {
  const fake = await start;
  closers.push(() => fake.close());
  return fake;
}

describe('GPU boxes shared by several workers', () => {
  test('two worker processes, one box: the box never holds two generation requests, and no reply shows another job’s preview', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 60 } });
    await sys.spawn('worker');
    await sys.spawn('worker');
    const jobs: { i: FakeInteraction; prompt: string }[] = [];
    for (let n = 0; n < 3; n++) {
      const prompt = `shared box ${n}`;
      jobs.push({ i: await sys.imagine({ prompt, steps: 40, user: member(n) }), prompt });
    }
    const done = await Promise.all(jobs.map(({ i }) => sys!.finalReply(i, 60_000)));
    for (const m of done) expect(m.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(sys.a1111.maxConcurrent).toBe(1);
    let shown = 0;
    for (const { i, prompt } of jobs) {
      for (const preview of previewsShown(sys, i)) {
        shown++;
        expect(sys.a1111.previewOwner(preview), `a preview in the reply to "${prompt}"`).toBe(prompt);
      }
    }
    // The rule can only fail if previews were shown at all.
    expect(shown).toBeGreaterThan(0);
  }, 90_000);

  test('cancelling a job that waits for the box leaves the running job untouched', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 100 } });
    await sys.spawn('worker');
    await sys.spawn('worker');
    const running = await sys.imagine({ prompt: 'the running one', steps: 30, user: ALICE });
    await sys.discord.waitFor(() => sys!.a1111.jobs.some((j) => j.prompt === 'the running one' && j.startedAt) || undefined);
    const waiting = await sys.imagine({ prompt: 'the waiting one', steps: 30, user: BOB });
    // The second worker has taken it and waits for the box.
    await sys.discord.waitForAsync(
      async () => (await db.prisma.job.findFirst({ where: { status: 'running', userId: BOB.id } })) ?? undefined,
    );
    const msg = await sys.discord.waitFor(() => {
      const m = waiting.original();
      return m?.components.length ? m : undefined;
    });
    const press = await sys.discord.buttonPress({ customId: buttonId(msg, 'Cancel'), messageId: msg.id, user: BOB });
    await press.waitForCallback();
    await sys.discord.waitFor(() => waiting.original()?.content.includes('Cancelled'), 20_000);
    const result = await sys.finalReply(running, 30_000);
    expect(result.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(sys.a1111.interrupts).toBe(0);
    expect(sys.a1111.jobs.filter((j) => j.prompt === 'the running one').map((j) => j.outcome)).toEqual(['done']);
    expect(sys.a1111.jobs.some((j) => j.prompt === 'the waiting one')).toBe(false);
    expect((await db.prisma.job.findFirstOrThrow({ where: { userId: BOB.id } })).status).toBe('cancelled');
  }, 60_000);

  test('a worker killed mid-job: its box is free again within the lease time, and the next job waits for the orphaned generation to end instead of sharing the box with it', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 100 }, env: { BOX_LEASE_MS: '1000' } });
    const doomed = await sys.spawn('worker');
    const first = await sys.imagine({ prompt: 'cut short', steps: 40, user: ALICE });
    await sys.discord.waitFor(() => sys!.a1111.jobs.some((j) => j.prompt === 'cut short' && j.startedAt) || undefined);
    await sys.spawn('worker');
    const next = await sys.imagine({ prompt: 'next in line', steps: 10, user: BOB });
    doomed.child.kill('SIGKILL');
    const done = await Promise.all([sys.finalReply(first, 60_000), sys.finalReply(next, 60_000)]);
    for (const m of done) expect(m.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(sys.a1111.maxConcurrent).toBe(1);
    for (const preview of previewsShown(sys, next)) expect(sys.a1111.previewOwner(preview)).toBe('next in line');
  }, 90_000);

  test('a box that stops answering: only the first job waits for it (seconds, not the progress timeout); the rest go straight to the cloud', async ({
    db,
    redisPrefix,
  }) => {
    const hf = await cloud<FakeHFEndpoint>(startFakeHFEndpoint());
    sys = await System.start({
      db,
      redisPrefix,
      worker: 'none',
      a1111: { mode: 'freeze' },
      env: { BACKENDS: 'a1111,huggingface', HF_ENDPOINT_URL: hf.url, HF_TOKEN: 'hf_test', PROGRESS_TIMEOUT_MS: '20000' },
    });
    await sys.spawn('worker');
    await sys.spawn('worker');
    const jobs: FakeInteraction[] = [];
    for (let n = 0; n < 4; n++) jobs.push(await sys.imagine({ prompt: `frozen box ${n}`, steps: 4, user: member(n) }));
    for (const i of jobs) expect((await sys.finalReply(i, 40_000)).attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    // At most one generation request ever reached the frozen box.
    expect(sys.a1111.jobs.length).toBeLessThanOrEqual(1);
    const rows = await db.prisma.job.findMany();
    expect(rows.every((r) => r.backend === 'huggingface')).toBe(true);
    const boxAttempts = rows
      .flatMap((r) => (r.result as { attempts: { backend: string; outcome: string; seconds: number }[] }).attempts ?? [])
      .filter((a) => a.backend === 'a1111' && a.outcome === 'failed');
    expect(boxAttempts.length).toBeLessThanOrEqual(1);
    // Given up on by the dead-box detector (about 2 s), far below the 20 s progress timeout.
    for (const a of boxAttempts) expect(a.seconds).toBeLessThan(15);
  }, 90_000);
});

describe('overflow to the cloud when the box is busy', () => {
  async function busyBox(o: { db: { url: string }; redisPrefix: string; budget: string }) {
    const replicate = await cloud<FakeReplicate>(startFakeReplicate({ durationMs: 200 }));
    sys = await System.start({
      db: o.db,
      redisPrefix: o.redisPrefix,
      worker: 'none',
      a1111: { stepDelayMs: 100 },
      env: {
        BACKENDS: 'a1111,replicate',
        REPLICATE_API_TOKEN: 'r8_fake',
        REPLICATE_API_URL: replicate.url,
        REPLICATE_OUTPUT_ORIGINS: replicate.url,
        OVERFLOW_AFTER_S: '3',
        DEFAULT_MONTHLY_BUDGET_USD: o.budget,
      },
    });
    await sys.spawn('worker');
    // One job first, so the box's run time (about 2 s) is known.
    await sys.finalReply(await sys.imagine({ prompt: 'warm up', steps: 20, user: member(9) }), 30_000);
    const jobs: FakeInteraction[] = [];
    for (let n = 0; n < 4; n++) jobs.push(await sys.imagine({ prompt: `busy ${n}`, steps: 20, user: member(n) }));
    const done = await Promise.all(jobs.map((i) => sys!.finalReply(i, 60_000)));
    for (const m of done) expect(m.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    expect(sys.a1111.maxConcurrent).toBe(1);
    return { replicate, jobs, done };
  }

  test('with budget: jobs expected to wait longer than OVERFLOW_AFTER_S run on Replicate, and their replies name the provider and the price first', async ({
    db,
    redisPrefix,
  }) => {
    const { replicate, jobs } = await busyBox({ db, redisPrefix, budget: '5' });
    expect(replicate.predictions.length).toBeGreaterThanOrEqual(1);
    // The box kept working: the warm-up, the first job and the one expected to wait under 3 s.
    expect(sys!.a1111.generations).toBeGreaterThanOrEqual(3);
    const rows = await db.prisma.job.findMany({ where: { backend: 'replicate' } });
    expect(rows.length).toBe(replicate.predictions.length);
    let onCloud = 0;
    for (const i of jobs) {
      const fields = Object.fromEntries(
        i.original()!.embeds[0].fields.map((f: { name: string; value: string }) => [f.name, f.value] as const),
      ) as Record<string, string>;
      if (fields.Backend !== 'replicate') continue;
      onCloud++;
      // Before it ran: where it may go and what it may cost; on the result: where it went and why.
      const shown = repliesShown(sys!, i).filter((c) => c !== '');
      expect(
        shown.some((c) => /Replicate/.test(c) && /\$0\.\d+/.test(c)),
        shown.join('\n'),
      ).toBe(true);
      expect(fields.Route).toBe('GPU box busy: sent to Replicate');
    }
    expect(onCloud).toBe(rows.length);
  }, 120_000);

  test('without budget: every job waits for the box and nothing is spent', async ({ db, redisPrefix }) => {
    const { replicate, jobs } = await busyBox({ db, redisPrefix, budget: '0' });
    expect(replicate.predictions).toHaveLength(0);
    expect(sys!.a1111.generations).toBe(5);
    for (const i of jobs) for (const c of repliesShown(sys!, i)) expect(c).not.toMatch(/\$0\.\d+|Replicate/);
  }, 120_000);
});
