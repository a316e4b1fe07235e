import { afterEach, expect } from 'vitest';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.js';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
let second: FakeA1111 | undefined;
afterEach(async () => {
  await sys?.stop();
  await second?.close();
  sys = undefined;
  second = undefined;
});

test('three worker processes, two GPU boxes, 30 jobs from ten members: spread over both boxes, none lost or run twice when a worker is killed', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 30 } });
  second = await startFakeA1111({ stepDelayMs: 30 });
  sys.env.A1111_URL = `${sys.a1111.url},${second.url}`;
  const workers = [await sys.spawn('worker'), await sys.spawn('worker'), await sys.spawn('worker')];
  const members = Array.from({ length: 10 }, (_, n) => ({ id: String(5000000000000000000n + BigInt(n)), username: `m${n}` }));
  const jobs: FakeInteraction[] = [];
  for (let n = 0; n < 30; n++) jobs.push(await sys.imagine({ prompt: `job ${n}`, steps: 8, user: members[n % 10] }));
  await sys.discord.waitFor(() => sys!.a1111.generations + second!.generations >= 6 || undefined, 20_000);
  workers[0]!.child.kill('SIGKILL');
  const done = await Promise.all(jobs.map((i) => sys!.finalReply(i, 60_000)));
  for (const m of done) expect(m.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
  expect(sys.a1111.generations).toBeGreaterThan(0);
  expect(second.generations).toBeGreaterThan(0);
  const rows = await db.prisma.job.findMany();
  expect(rows).toHaveLength(30);
  expect(rows.every((r) => r.status === 'succeeded' && r.deliveredAt !== null)).toBe(true);
  // One result upload per job, one charge per image.
  const uploads = sys.discord.requests.filter((r) => r.files.some((f) => f.filename.startsWith('image-')));
  expect(uploads).toHaveLength(30);
  const usage = await db.prisma.memberUsage.findMany();
  expect(usage.reduce((s, u) => s + u.images, 0)).toBe(30);
  expect(await db.prisma.costLedger.count({ where: { outcome: 'succeeded' } })).toBe(30);
}, 90_000);

test('a burst of 400 interactions is answered over a bounded number of connections to Discord, each acknowledged', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, worker: 'none', env: { MAX_QUEUED_PER_USER: '100' } });
  const members = Array.from({ length: 40 }, (_, n) => ({ id: String(5100000000000000000n + BigInt(n)), username: `b${n}` }));
  const before = sys.discord.connectionsOpened;
  // All at once, as a busy evening's peak would send them: each one a request to Discord in flight together.
  const burst = await Promise.all(
    Array.from({ length: 400 }, (_, n) => sys!.imagine({ prompt: `burst ${n}`, steps: 2, user: members[n % 40] })),
  );
  const acks = await Promise.all(burst.map((i) => i.waitForCallback(15_000)));
  // Every one admitted: deferred, or (admitted early in the burst) answered in public with its place.
  expect(acks.every((cb) => cb.type === 5 || (cb.type === 4 && ((cb.data.flags ?? 0) & 64) === 0))).toBe(true);
  // One TCP (in production, TLS) connection per request in flight was ~one per interaction; a pool reuses them.
  expect(sys.discord.connectionsOpened - before).toBeLessThanOrEqual(2 * 128);
}, 60_000);
