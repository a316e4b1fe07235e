import { afterEach, expect } from 'vitest';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { type SlowProxy, startSlowProxy } from '../setup/slow-proxy.js';
import { ALICE, buttonId, System } from './harness.js';

let sys: System | undefined;
let proxy: SlowProxy | undefined;
afterEach(async () => {
  if (proxy) proxy.delayMs = 0;
  await sys?.stop();
  await proxy?.close();
  sys = undefined;
  proxy = undefined;
});

/** The first answer Discord accepted for an interaction, and how long after the interaction it came. */
async function firstAnswer(i: FakeInteraction) {
  const cb = await i.waitForCallback(5000);
  return { cb, ms: cb.at - i.createdAt };
}

test('a slow Postgres: every interaction is still answered within 3 s, the refusal of the Edit form is private, and a deferred command says the database is unavailable', async ({
  db,
  redisPrefix,
}) => {
  const u = new URL(db.url);
  proxy = await startSlowProxy({ host: u.hostname, port: Number(u.port || 5432) });
  u.hostname = '127.0.0.1';
  u.port = String(proxy.port);
  sys = await System.start({ db, redisPrefix, env: { DATABASE_URL: u.toString() } });
  const result = await sys.finalReply(await sys.imagine({ prompt: 'before the database slowed down', steps: 2 }));

  proxy.delayMs = 10_000;
  // The Edit button must answer with a form, which needs the job first: it says so privately instead.
  const edit = await sys.discord.buttonPress({ customId: buttonId(result, 'Edit'), messageId: result.id, user: ALICE });
  const e = await firstAnswer(edit);
  expect(e.ms).toBeLessThan(3000);
  expect(e.cb.type).toBe(4);
  expect(e.cb.data.flags & 64).toBe(64);
  expect(e.cb.data.content).toContain('cannot reach its database');

  const i = await sys.imagine({ prompt: 'while the database is slow', steps: 2 });
  const a = await firstAnswer(i);
  expect(a.ms).toBeLessThan(3000);
  // The reply was deferred publicly before the database answered: the public "thinking…" is cleared
  // away and the member alone is told; the channel keeps only the earlier result.
  const told = await sys.answerOf(i, 20_000);
  expect(told.content).toContain('cannot reach its database');
  expect(told.flags & 64).toBe(64);
  expect(told.content).not.toContain('while the database is slow');
  expect(sys.publicTraces(i.payload.channel_id).map((m) => m.id)).toEqual([result.id]);
}, 60_000);
