import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect } from 'vitest';
import { type JobPayload, parseImagineOptions } from '../../core/generation.js';
import { guildPrefix } from '../../core/io/link.js';
import { createGenerateQueue, enqueueJob } from '../../core/io/queue.js';
import { PERMS } from '../fakes/discord/server.js';
import type { APIOption, FakeInteraction, FakeMessage } from '../fakes/discord/types.js';
import { connectionsOf, deleteTestUsers, TEST_REDIS_URL, until } from '../setup/acl.js';
import { test } from '../setup/fixtures.js';
import { ALICE, GUILD_ID, System } from './harness.js';

let sys: System | undefined;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

const LOG_CHANNEL = '5555555555555555555';
const TOKEN = /WORKER_JOIN_TOKEN=(ibj1\.[a-z0-9]{16}\.[A-Za-z0-9_-]+)/;

async function gpu(s: System, sub: string, options: APIOption[] = [], perms = PERMS.manager): Promise<FakeMessage> {
  const i: FakeInteraction = await s.discord.slashCommand({
    name: 'admin',
    subcommandGroup: 'gpu',
    subcommand: sub,
    options,
    memberPermissions: perms,
    user: ALICE,
    guildId: GUILD_ID,
  });
  return s.discord.waitFor(() => {
    const m = i.original();
    return m?.content ? m : undefined;
  });
}

const tokenOf = (m: FakeMessage) => TOKEN.exec(m.content)?.[1] ?? '';
const linkIdOf = (token: string) => token.split('.')[1]!;

function tempCredentials(): string {
  const dir = mkdtempSync(join(tmpdir(), 'imagebot-link-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'data', 'worker-link.json');
}

/**
 * The bot runs as the Redis user README ("Running the hosted instance") tells an operator to create:
 * its prefix's keys and channels, no dangerous command but INFO, and ACL SETUSER/DELUSER.
 */
async function botUserUrl(redisPrefix: string): Promise<string> {
  const admin = new Redis(TEST_REDIS_URL);
  try {
    const user = `${redisPrefix}-bot`;
    await admin.call('ACL', 'SETUSER', user, 'on', '>bot-password-1234', `~${redisPrefix}:*`, `&${redisPrefix}:*`);
    await admin.call('ACL', 'SETUSER', user, '+@all', '-@dangerous', '+info', '+acl|setuser', '+acl|deluser');
    const u = new URL(TEST_REDIS_URL);
    u.username = user;
    u.password = 'bot-password-1234';
    return u.toString();
  } finally {
    admin.disconnect();
  }
}

async function startLinked(redisPrefix: string, db: { url: string }) {
  cleanups.push(() => deleteTestUsers(redisPrefix));
  sys = await System.start({
    db,
    redisPrefix,
    worker: 'none',
    captureBotLog: true,
    env: { REDIS_URL: await botUserUrl(redisPrefix), LINK_REDIS_URL: TEST_REDIS_URL, HEALTH_PROBE_MS: '200' },
  });
  const s = sys;
  const logChannel = await s.discord.slashCommand({
    name: 'admin',
    subcommand: 'log-channel',
    options: [{ name: 'channel', type: 7, value: LOG_CHANNEL }],
    resolved: { channels: { [LOG_CHANNEL]: { id: LOG_CHANNEL, type: 0, name: 'mods', permissions: PERMS.member } } },
    memberPermissions: PERMS.manager,
    user: ALICE,
    guildId: GUILD_ID,
  });
  // The channel is set before anything a test does posts there.
  await s.discord.waitFor(() => logChannel.original()?.content);
  return s;
}

const payload = (jobId: string, prompt: string): JobPayload => ({
  v: 1,
  jobId,
  guildId: GUILD_ID,
  request: { ...parseImagineOptions({ prompt, steps: 4 }), width: 512, height: 512 },
  paidAllowed: false,
  nsfwAllowed: true,
});

describe('/admin gpu: linking a server’s own GPU box', () => {
  test('link gives a one-time token and the command; the box joins with it, stores its credentials (0600), serves its guild and shows online with its jobs; every step is audited and the token is never stored, posted or logged', async ({
    db,
    redisPrefix,
  }) => {
    const s = await startLinked(redisPrefix, db);
    const reply = await gpu(s, 'link');
    expect(reply.flags & 64).toBe(64);
    const token = tokenOf(reply);
    expect(token).not.toBe('');
    expect(reply.content).toContain(`REDIS_URL=${TEST_REDIS_URL}`);
    expect(reply.content).toContain(`QUEUE_PREFIX=${redisPrefix}`);
    expect(reply.content).toContain('docker compose -f docker-compose.worker.yml up -d --build');
    expect(reply.content).toContain('npm run worker');
    const linkId = linkIdOf(token);
    expect((await gpu(s, 'status')).content).toContain('waiting for the box to join');

    const file = tempCredentials();
    const box = await s.spawn('worker', { env: { WORKER_JOIN_TOKEN: token, WORKER_CREDENTIALS_FILE: file } });
    const creds = JSON.parse(readFileSync(file, 'utf8')) as { guildId: string; redisUrl: string };
    expect(creds.guildId).toBe(GUILD_ID);
    expect(new URL(creds.redisUrl).username).toBe(encodeURIComponent(`${redisPrefix}-link-${linkId}`));
    expect(statSync(file).mode & 0o777).toBe(0o600);

    // A job in the guild's queue runs on its box.
    const admin = new Redis(TEST_REDIS_URL);
    cleanups.push(() => admin.disconnect());
    const queue = createGenerateQueue(admin, guildPrefix(redisPrefix, GUILD_ID));
    cleanups.push(() => queue.close());
    await enqueueJob(queue, payload('j1', 'a lighthouse on the box'));
    await until(async () => (await (await queue.getJob('j1'))?.getState()) === 'completed');
    expect(s.a1111.jobs.map((j) => j.prompt)).toEqual(['a lighthouse on the box']);
    const status = await until(async () => {
      const m = await gpu(s, 'status');
      return m.content.includes('**online**') && m.content.includes('1 job today') ? m : undefined;
    });
    expect(status.content).toContain(`\`${linkId}\``);
    expect(status.content).toContain('a1111');

    const link = await db.prisma.gpuLink.findUniqueOrThrow({ where: { id: linkId } });
    expect(link).toMatchObject({ guildId: GUILD_ID, createdBy: ALICE.id, redisUser: `${redisPrefix}-link-${linkId}`, revokedAt: null });
    expect(link.joinedAt).not.toBeNull();
    expect(link.tokenHash).not.toContain(token.split('.')[2]);
    const audit = await db.prisma.auditLog.findMany({ where: { action: { startsWith: 'gpu' } }, orderBy: { id: 'asc' } });
    expect(audit.map((a) => [a.action, a.target])).toEqual([
      ['gpu link', linkId],
      ['gpu join', linkId],
    ]);
    // The moderators' link and the box's join are both announced in the log channel.
    await s.discord.waitFor(() => s.discord.channelMessages(LOG_CHANNEL).find((n) => n.content.includes('joined')));
    const notices = s.discord.channelMessages(LOG_CHANNEL);
    expect(notices.map((n) => n.content)).toEqual([
      expect.stringContaining('Notices will be posted in'),
      expect.stringContaining(`linked a GPU box (link \`${linkId}\``),
      `🖥️ GPU box \`${linkId}\` joined: it runs this server's jobs from now on.`,
    ]);
    const secret = token.split('.')[2]!;
    for (const n of notices) expect(n.content).not.toContain(secret);
    for (const line of [...s.botLogs, ...box.logs]) expect(line).not.toContain(secret);
    expect(box.logs.join('\n')).not.toContain(new URL(creds.redisUrl).password);
  });

  test('the token works once; a restart uses the stored credentials; rotate and unlink cut the running box off at once', async ({
    db,
    redisPrefix,
  }) => {
    const s = await startLinked(redisPrefix, db);
    const token = tokenOf(await gpu(s, 'link'));
    const linkId = linkIdOf(token);
    const file = tempCredentials();
    const first = await s.spawn('worker', { env: { WORKER_JOIN_TOKEN: token, WORKER_CREDENTIALS_FILE: file } });
    first.child.kill('SIGTERM');
    await first.exited;

    // Same token, credentials kept: starts again as the linked box.
    const again = await s.spawn('worker', { env: { WORKER_JOIN_TOKEN: token, WORKER_CREDENTIALS_FILE: file } });
    expect(again.logs.join('\n')).toContain('using stored credentials');

    // Same token, no credentials (another machine, or a lost volume): refused, with what to do.
    const other = s.spawn('worker', { env: { WORKER_JOIN_TOKEN: token, WORKER_CREDENTIALS_FILE: tempCredentials() } });
    await expect(other).rejects.toThrow(/already used or has been revoked.*\/admin gpu rotate/);

    const admin = new Redis(TEST_REDIS_URL);
    cleanups.push(() => admin.disconnect());
    const user = `${redisPrefix}-link-${linkId}`;
    expect(await connectionsOf(admin, user)).toBeGreaterThan(0);

    const rotated = await gpu(s, 'rotate', [{ name: 'link', type: 3, value: linkId }]);
    const newToken = tokenOf(rotated);
    expect(newToken).not.toBe('');
    expect(newToken).not.toBe(token);
    expect(rotated.content).toContain('old access has ended');
    expect(await connectionsOf(admin, user)).toBe(0);
    await s.discord.waitFor(() => (again.logs.some((l) => l.includes('no longer linked')) ? true : undefined));
    // It gets no job now (checked over a few lock periods before the box restarts).
    const queue = createGenerateQueue(admin, guildPrefix(redisPrefix, GUILD_ID));
    cleanups.push(() => queue.close());
    await enqueueJob(queue, payload('j2', 'after rotate'));
    await new Promise((r) => setTimeout(r, 2000));
    expect(await (await queue.getJob('j2'))?.getState()).toBe('waiting');
    expect(s.a1111.jobs).toEqual([]);

    // The box restarted with the new token joins again (its stored credentials came from the old one).
    again.child.kill('SIGKILL');
    await again.exited;
    const rejoined = await s.spawn('worker', { env: { WORKER_JOIN_TOKEN: newToken, WORKER_CREDENTIALS_FILE: file } });
    expect(rejoined.logs.join('\n')).toContain('joined');
    await until(async () => (await (await queue.getJob('j2'))?.getState()) === 'completed');

    const unlinked = await gpu(s, 'unlink', [{ name: 'link', type: 3, value: linkId }]);
    expect(unlinked.content).toContain('unlinked');
    expect(await connectionsOf(admin, user)).toBe(0);
    await enqueueJob(queue, payload('j3', 'after unlink'));
    expect((await gpu(s, 'status')).content).toContain('No GPU box is linked');
    expect((await gpu(s, 'unlink', [{ name: 'link', type: 3, value: linkId }])).content).toContain('no active GPU link');
    expect(s.a1111.jobs.map((j) => j.prompt)).toEqual(['after rotate']);
    expect(await (await queue.getJob('j3'))?.getState()).toBe('waiting');

    const audit = await db.prisma.auditLog.findMany({ where: { action: { startsWith: 'gpu' } }, orderBy: { id: 'asc' } });
    expect(audit.map((a) => a.action)).toEqual(['gpu link', 'gpu join', 'gpu rotate', 'gpu join', 'gpu unlink']);
    expect(audit.filter((a) => a.action !== 'gpu join').every((a) => a.actorId === ALICE.id)).toBe(true);
  });

  test('a plain member is refused, and without LINK_REDIS_URL linking says it is off', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    expect((await gpu(sys, 'link', [], PERMS.member)).content).toContain('Only moderators');
    expect((await gpu(sys, 'link')).content).toContain('not enabled');
    expect(await db.prisma.gpuLink.count()).toBe(0);
  });
});
