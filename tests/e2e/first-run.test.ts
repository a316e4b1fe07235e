import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PermissionFlagsBits } from 'discord.js';
import { Redis } from 'ioredis';
import { afterEach, describe, expect } from 'vitest';
import { registrationPayload } from '../../commands/index.js';
import { startFakeA1111 } from '../fakes/a1111.js';
import { startFakeDiscord } from '../fakes/discord/server.js';
import { deleteTestUsers } from '../setup/acl.js';
import { test } from '../setup/fixtures.js';
import { emptyCwd, sourceEntryArgs } from '../setup/processes.js';
import { GUILD_ID, System } from './harness.js';

const run = promisify(execFile);
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

let sys: System | undefined;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  for (const c of cleanups.splice(0)) await c();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'imagebot-firstrun-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The environment of a shell on a fresh machine: nothing of ours set. */
function bareEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      (e): e is [string, string] =>
        e[1] !== undefined && !/^(DISCORD_|A1111_|BACKENDS|COMFYUI_|REPLICATE_|HF_|DATABASE_URL|REDIS_URL|QUEUE_PREFIX)/.test(e[0]),
    ),
  );
  return { ...env, ...extra };
}

/** Runs a script from scripts/ as `npm run <name>` does, in `cwd`; resolves with its exit code and output. */
async function script(name: string, args: string[], o: { cwd: string; env: Record<string, string> }) {
  try {
    const { stdout, stderr } = await run(process.execPath, [...sourceEntryArgs(`scripts/${name}.ts`), ...args], { ...o, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('settings come from .env in the working directory', () => {
  test('a worker started with only a .env (A1111_URL in it) makes images, and a variable set in the environment wins over the file', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none' });
    const dir = await tempDir();
    // The file names the wrong prefix: the environment's must win, or the job would never be picked up.
    await writeFile(join(dir, '.env'), `A1111_URL=${sys.a1111.url}\nQUEUE_PREFIX=not-this-one\nPROGRESS_POLL_MS=50\n`);
    const worker = await sys.spawn('worker', { cwd: dir, env: { A1111_URL: undefined } });
    expect(worker.logs.some((l) => l.includes('read settings from .env'))).toBe(true);
    const i = await sys.imagine({ prompt: 'a lighthouse' });
    const msg = await sys.finalReply(i);
    expect(msg.attachments.map((a) => a.filename)).toContain('image-1.png');
    expect(sys.a1111.requests.some((r) => r.path === '/sdapi/v1/txt2img')).toBe(true);
  });
});

describe('slash commands are registered when the bot starts', () => {
  test('a first start registers every command in the dev guild; a restart with the same commands writes nothing', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, env: { DISCORD_DEV_GUILD_ID: GUILD_ID } });
    const names = (cmds: Array<{ name: string }>) => cmds.map((c) => c.name).sort();
    expect(names(sys.discord.registeredCommands(GUILD_ID))).toEqual(names(registrationPayload()));
    expect(sys.discord.registeredCommands()).toEqual([]);
    const puts = () => sys!.discord.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/commands'));
    expect(puts()).toHaveLength(1);

    await sys.bot!.stop();
    await sys.startBot();
    const gets = sys.discord.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/guilds/${GUILD_ID}/commands`));
    expect(gets).toHaveLength(2);
    expect(puts()).toHaveLength(1);
    expect(sys.discord.unhandled).toEqual([]);
  });

  test('unsetting DISCORD_DEV_GUILD_ID after trying it out (README step 5) removes the dev guild copies, so that server does not list each command twice', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none', env: { DISCORD_DEV_GUILD_ID: GUILD_ID } });
    expect(sys.discord.registeredCommands(GUILD_ID).length).toBeGreaterThan(0);
    await sys.bot!.stop();
    sys.bot = undefined;
    delete sys.env.DISCORD_DEV_GUILD_ID;
    await sys.startBot();
    expect(sys.discord.registeredCommands().length).toBeGreaterThan(0);
    // Discord shows guild and global commands side by side.
    expect(sys.discord.registeredCommands(GUILD_ID)).toEqual([]);
    // Done once: a later restart does not touch the guild again.
    await sys.bot!.stop();
    await sys.startBot();
    expect(sys.discord.requests.filter((r) => r.path.endsWith(`/guilds/${GUILD_ID}/commands`) && r.method === 'PUT')).toHaveLength(2);
  });

  test('the dev guild is cleared even when Redis answers the bot only after Discord has (a slow Redis at start)', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none', env: { DISCORD_DEV_GUILD_ID: GUILD_ID } });
    await sys.bot!.stop();
    sys.bot = undefined;
    // Redis reached through a proxy that holds every connection's bytes for its first 800 ms.
    const target = new URL(sys.env.REDIS_URL!);
    const proxy = createServer((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      client.pause();
      setTimeout(() => {
        client.pipe(upstream).pipe(client);
        client.resume();
      }, 800);
      const close = () => (client.destroy(), upstream.destroy());
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      sys.env.REDIS_URL = `redis://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      delete sys.env.DISCORD_DEV_GUILD_ID;
      await sys.startBot();
      expect(sys.discord.registeredCommands(GUILD_ID)).toEqual([]);
    } finally {
      // Stopped while its proxy still stands; the System's own stop then finds no bot.
      await (sys.bot as { stop(): Promise<void> } | undefined)?.stop();
      sys.bot = undefined;
      proxy.close();
    }
  });

  test('a command that changed since the last registration is registered again, globally without a dev guild', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix, bot: 'none' });
    // What an older release registered: /imagine without its preset option, and a command since removed.
    const old = registrationPayload().map((c) =>
      c.name === 'imagine' ? { ...c, options: c.options?.filter((o) => o.name !== 'preset') } : c,
    );
    const put = await fetch(`${sys.discord.apiUrl}/v10/applications/${sys.discord.appId}/commands`, {
      method: 'PUT',
      headers: { authorization: `Bot ${sys.discord.token}`, 'content-type': 'application/json' },
      body: JSON.stringify([...old, { name: 'retired', description: 'gone in this release' }]),
    });
    expect(put.status).toBe(200);
    await sys.startBot();
    const registered = sys.discord.registeredCommands() as Array<{ name: string; options: Array<{ name: string }> }>;
    expect(registered.map((c) => c.name).sort()).toEqual(['admin', 'forget', 'imagine', 'inpaint', 'quota']);
    expect(registered.find((c) => c.name === 'imagine')!.options.map((o) => o.name)).toContain('preset');
  });
});

describe('npm run invite', () => {
  test('prints the invite link with the bot and applications.commands scopes and exactly the permissions the bot uses', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, '.env'), 'DISCORD_APP_ID=1111111111111111111\n');
    const out = await script('invite', [], { cwd: dir, env: bareEnv() });
    expect(out.code).toBe(0);
    const url = new URL(out.stdout.trim());
    expect(url.origin + url.pathname).toBe('https://discord.com/oauth2/authorize');
    expect(url.searchParams.get('client_id')).toBe('1111111111111111111');
    expect(url.searchParams.get('scope')).toBe('bot applications.commands');
    const p = PermissionFlagsBits;
    const expected = p.ViewChannel | p.SendMessages | p.SendMessagesInThreads | p.EmbedLinks | p.AttachFiles | p.ReadMessageHistory;
    expect(BigInt(url.searchParams.get('permissions')!)).toBe(expected);
  });

  test('without DISCORD_APP_ID it says where the id comes from', async () => {
    const out = await script('invite', [], { cwd: emptyCwd(), env: bareEnv() });
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/DISCORD_APP_ID .*Developer Portal/);
  });
});

describe('npm run doctor checks what the role in front of it needs', () => {
  test('on a GPU box with only REDIS_URL and A1111_URL in .env it checks the worker alone and passes', async ({ redisPrefix }) => {
    const a1111 = await startFakeA1111({});
    cleanups.push(() => a1111.close());
    const dir = await tempDir();
    await writeFile(join(dir, '.env'), `REDIS_URL=${REDIS_URL}\nQUEUE_PREFIX=${redisPrefix}\nA1111_URL=${a1111.url}\n`);
    const out = await script('doctor', [], { cwd: dir, env: bareEnv() });
    expect(out.stdout).toContain('Checking the worker');
    expect(out.stdout).toMatch(/✓ backend a1111.*healthy/);
    expect(out.stdout).not.toMatch(/DISCORD|Postgres/);
    expect(out.stdout).toContain('All checks passed.');
    expect(out.code).toBe(0);
  });

  test('--generate --out DIR saves the test image there, and a directory it cannot write is reported as that, not as a missing checkpoint', async ({
    redisPrefix,
  }) => {
    const a1111 = await startFakeA1111({});
    cleanups.push(() => a1111.close());
    const dir = await tempDir();
    const env = bareEnv({ REDIS_URL, QUEUE_PREFIX: redisPrefix, A1111_URL: a1111.url, NSFW_CLASSIFIER: 'off' });
    const out = await tempDir();
    const ok = await script('doctor', ['--role', 'worker', '--generate', '--out', out], { cwd: dir, env });
    expect(ok.stdout).toContain(`made an image: ${join(out, 'a1111.png')}`);
    expect((await readdir(out)).sort()).toEqual(['a1111.png']);
    expect(ok.code).toBe(0);
    // The image's /app is root's and doctor runs as node: any unwritable place fails the same way.
    const blocker = join(dir, 'a-file');
    await writeFile(blocker, '');
    const bad = await script('doctor', ['--role', 'worker', '--generate', '--out', join(blocker, 'sub')], { cwd: dir, env });
    expect(bad.stdout).toMatch(/✗ backend a1111 made an image but it could not be saved in .*a-file\/sub/);
    expect(bad.stdout).toContain('--out');
    expect(bad.stdout).not.toContain('SDXL');
    expect(bad.code).toBe(1);
  });

  test('a dead GPU box fails with the fix, and --role bot on that box names each missing bot setting with where to get it', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, '.env'), `REDIS_URL=${REDIS_URL}\nA1111_URL=http://127.0.0.1:9\n`);
    const worker = await script('doctor', [], { cwd: dir, env: bareEnv() });
    expect(worker.code).toBe(1);
    expect(worker.stdout).toMatch(/✗ backend a1111.*down[^\n]*\n\s+→ check A1111_URL/);

    const bot = await script('doctor', ['--role', 'bot'], { cwd: dir, env: bareEnv() });
    expect(bot.code).toBe(1);
    expect(bot.stdout).toMatch(/✗ bot configuration: DISCORD_TOKEN is required\n\s+→ Developer Portal .*Bot → Reset Token/);
    expect(bot.stdout).toMatch(/✗ bot configuration: DISCORD_APP_ID is required\n\s+→ Developer Portal .*Application ID/);
    expect(bot.stdout).not.toContain('backend a1111');
  });

  test('for the bot it checks Postgres and its migrations, the token against the application id, and the slash commands', async ({
    db,
    redisPrefix,
  }) => {
    const discord = await startFakeDiscord();
    cleanups.push(() => discord.close());
    const env = bareEnv({
      DISCORD_TOKEN: discord.token,
      DISCORD_APP_ID: discord.appId,
      DISCORD_API_URL: discord.apiUrl,
      DATABASE_URL: db.url,
      REDIS_URL,
      QUEUE_PREFIX: redisPrefix,
    });
    const out = await script('doctor', [], { cwd: emptyCwd(), env });
    expect(out.stdout).toContain('Checking the bot');
    expect(out.stdout).toMatch(/✓ Postgres migrations applied/);
    expect(out.stdout).toMatch(/✓ Discord token belongs to/);
    expect(out.stdout).toMatch(/! slash commands not registered yet: \/imagine/);
    expect(out.stdout).toMatch(/invite link: https:\/\/discord\.com\/oauth2\/authorize\?client_id=/);
    expect(out.code).toBe(0);
  });

  test('with linking on (LINK_REDIS_URL) it checks that the bot may create and delete Redis users, and says which permission is missing', async ({
    db,
    redisPrefix,
  }) => {
    cleanups.push(() => deleteTestUsers(redisPrefix));
    const discord = await startFakeDiscord();
    cleanups.push(() => discord.close());
    const admin = new Redis(REDIS_URL);
    cleanups.push(async () => admin.disconnect());
    // The bot's Redis user as an operator might set it up before linking: everything on its keys but ACL.
    const botUser = `${redisPrefix}-bot`;
    await admin.call('ACL', 'SETUSER', botUser, 'on', '>bot-password-1234', `~${redisPrefix}:*`, `&${redisPrefix}:*`, '+@all', '-@admin');
    const env = (redisUrl: string) =>
      bareEnv({
        DISCORD_TOKEN: discord.token,
        DISCORD_APP_ID: discord.appId,
        DISCORD_API_URL: discord.apiUrl,
        DATABASE_URL: db.url,
        REDIS_URL: redisUrl,
        QUEUE_PREFIX: redisPrefix,
        LINK_REDIS_URL: 'rediss://redis.example.com:6380',
      });
    const u = new URL(REDIS_URL);
    u.username = botUser;
    u.password = 'bot-password-1234';
    const refused = await script('doctor', ['--role', 'bot'], { cwd: emptyCwd(), env: env(u.toString()) });
    expect(refused.stdout).toMatch(
      /✗ the bot cannot manage Redis users[^\n]*NOPERM[^\n]*\n\s+→ grant the bot's Redis user \+acl\|setuser \+acl\|deluser/,
    );
    expect(refused.code).toBe(1);
    await admin.call('ACL', 'SETUSER', botUser, '+acl|setuser', '+acl|deluser');
    const granted = await script('doctor', ['--role', 'bot'], { cwd: emptyCwd(), env: env(u.toString()) });
    expect(granted.stdout).toMatch(/✓ the bot can create and delete Redis users/);
    expect(granted.code).toBe(0);
  });
});

describe('npm run status', () => {
  test('prints the queue, the backends and the last 24 h from Redis and Postgres named in .env', async ({ db, redisPrefix }) => {
    const dir = await tempDir();
    await writeFile(join(dir, '.env'), `REDIS_URL=${REDIS_URL}\nQUEUE_PREFIX=${redisPrefix}\nDATABASE_URL=${db.url}\n`);
    const out = await script('status', [], { cwd: dir, env: bareEnv() });
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/^Queue\n/);
    expect(out.stdout).toContain('Jobs, last 24 h');
  });

  test('on a GPU box (no DATABASE_URL) it prints the queue and the backends, and says where jobs and cost live', async ({
    redisPrefix,
  }) => {
    const dir = await tempDir();
    await writeFile(join(dir, '.env'), `REDIS_URL=${REDIS_URL}\nQUEUE_PREFIX=${redisPrefix}\nA1111_URL=http://127.0.0.1:9\n`);
    const out = await script('status', [], { cwd: dir, env: bareEnv() });
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('Backends (latest report per worker)');
    expect(out.stdout).toContain('no DATABASE_URL here');
  });
});
