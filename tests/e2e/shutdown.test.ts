import { afterEach, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('SIGTERM on a worker mid-job: it exits promptly, hands the job back, and another worker finishes it once', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 100 } });
  const first = await sys.spawn('worker');
  const i = await sys.imagine({ prompt: 'handed back', steps: 30 });
  await sys.discord.waitFor(() => sys!.a1111.requests.some((r) => r.path === '/sdapi/v1/txt2img'), 10_000);
  const t0 = Date.now();
  first.child.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(sys.a1111.interrupts).toBeGreaterThanOrEqual(1);
  await sys.spawn('worker');
  const msg = await sys.finalReply(i, 30_000);
  expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
  expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(1);
});

test('SIGTERM on the bot: it exits cleanly within the grace period, and the job it was following is still delivered once', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, bot: 'none', a1111: { stepDelayMs: 100 } });
  const bot = await sys.spawn('bot');
  const i = await sys.imagine({ prompt: 'bot restarts', steps: 20 });
  await sys.discord.waitFor(() => i.original()?.content.includes('Queued'));
  const t0 = Date.now();
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(20_000);
  await sys.spawn('bot');
  const msg = await sys.finalReply(i, 30_000);
  expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
  expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(1);
});
