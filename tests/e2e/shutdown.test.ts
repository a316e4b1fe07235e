import { afterEach, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('SIGTERM on a worker mid-job: it exits promptly, hands the job back, and another worker finishes it once', async ({ db, redisPrefix }) => {
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
