import { describe, expect, test } from 'vitest';
import { botConfigSchema, ConfigError, loadConfig, workerConfigSchema } from '../../core/config.js';

const bot = { DISCORD_TOKEN: 'secret-token-value', DISCORD_APP_ID: '1111111111111111111' };

function errorLines(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.lines;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('bot configuration', () => {
  test('defaults from PRODUCT.md apply', () => {
    const c = loadConfig(botConfigSchema, bot);
    expect(c.DEFAULT_DAILY_IMAGES).toBe(25);
    expect(c.DEFAULT_MONTHLY_BUDGET_USD).toBe(5);
    expect(c.DISCORD_API_URL).toBe('https://discord.com/api');
    expect(c.DISCORD_ATTACHMENT_ORIGINS).toEqual(['https://cdn.discordapp.com', 'https://media.discordapp.net']);
    expect(c.REDIS_URL).toBe('redis://localhost:6379');
  });

  test('a missing token is named, one line per variable', () => {
    const lines = errorLines(() => loadConfig(botConfigSchema, { DISCORD_APP_ID: bot.DISCORD_APP_ID }));
    expect(lines).toEqual(['DISCORD_TOKEN is required']);
  });

  test('malformed values are named with the rule, never echoing the value', () => {
    const lines = errorLines(() =>
      loadConfig(botConfigSchema, { ...bot, DISCORD_APP_ID: 'abc', DEFAULT_DAILY_IMAGES: 'lots', REDIS_URL: 'http://x:secretpw@h' }),
    );
    expect(lines.map((l) => l.split(' ')[0]).sort()).toEqual(['DEFAULT_DAILY_IMAGES', 'DISCORD_APP_ID', 'REDIS_URL']);
    expect(lines.join('\n')).not.toContain('secretpw');
    expect(lines.join('\n')).not.toContain('lots');
  });
});

test('LINK_REDIS_URL, shown to moderators by /admin gpu link, may not hold credentials', () => {
  expect(loadConfig(botConfigSchema, { ...bot, LINK_REDIS_URL: 'rediss://redis.example.org:6380' }).LINK_REDIS_URL).toBe(
    'rediss://redis.example.org:6380',
  );
  const lines = errorLines(() => loadConfig(botConfigSchema, { ...bot, LINK_REDIS_URL: 'rediss://bot:secretpw@redis.example.org:6380' }));
  expect(lines).toEqual(['LINK_REDIS_URL must not hold credentials (each linked box gets its own)']);
});

describe('worker configuration', () => {
  test('has no Discord token or database URL in its schema', () => {
    const c = loadConfig(workerConfigSchema, { A1111_URL: 'http://gpu:7860', DISCORD_TOKEN: 'x', DATABASE_URL: 'postgres://x' });
    expect(c).not.toHaveProperty('DISCORD_TOKEN');
    expect(c).not.toHaveProperty('DATABASE_URL');
  });

  test('BACKENDS defaults to the configured ones in contract order; A1111_URL may list several boxes', () => {
    const c = loadConfig(workerConfigSchema, { A1111_URL: 'http://a:7860, http://b:7860', REPLICATE_API_TOKEN: 'r8_x' });
    expect(c.BACKENDS).toEqual(['a1111', 'replicate']);
    expect(c.A1111_URL).toEqual(['http://a:7860', 'http://b:7860']);
  });

  test('A1111_UPSCALER defaults to R-ESRGAN 4x+; a blank value keeps the default', () => {
    expect(loadConfig(workerConfigSchema, { A1111_URL: 'http://a' }).A1111_UPSCALER).toBe('R-ESRGAN 4x+');
    expect(loadConfig(workerConfigSchema, { A1111_URL: 'http://a', A1111_UPSCALER: '  ' }).A1111_UPSCALER).toBe('R-ESRGAN 4x+');
    expect(loadConfig(workerConfigSchema, { A1111_URL: 'http://a', A1111_UPSCALER: ' SwinIR 4x ' }).A1111_UPSCALER).toBe('SwinIR 4x');
  });

  test('COMFYUI_URL takes several servers like A1111_URL; the overflow, dead-box and lease settings have their defaults', () => {
    const c = loadConfig(workerConfigSchema, { COMFYUI_URL: 'http://c1:8188,http://c2:8188' });
    expect(c.COMFYUI_URL).toEqual(['http://c1:8188', 'http://c2:8188']);
    expect(c).toMatchObject({ BACKENDS: ['comfyui'], OVERFLOW_AFTER_S: 60, BOX_DEAD_AFTER_MS: 2000, BOX_LEASE_MS: 5000 });
    expect(errorLines(() => loadConfig(workerConfigSchema, { COMFYUI_URL: 'http://c1:8188,ftp://x' }))[0]).toMatch(/^COMFYUI_URL /);
  });

  test('WORKER_CONCURRENCY defaults to a slot per box, plus 8 to wait and overflow when a cloud backend is configured', () => {
    expect(loadConfig(workerConfigSchema, { A1111_URL: 'http://a' }).WORKER_CONCURRENCY).toBe(1);
    expect(loadConfig(workerConfigSchema, { A1111_URL: 'http://a,http://b' }).WORKER_CONCURRENCY).toBe(2);
    expect(loadConfig(workerConfigSchema, { A1111_URL: 'http://a', REPLICATE_API_TOKEN: 'r8_x' }).WORKER_CONCURRENCY).toBe(9);
    expect(loadConfig(workerConfigSchema, { REPLICATE_API_TOKEN: 'r8_x' }).WORKER_CONCURRENCY).toBe(4);
    expect(
      loadConfig(workerConfigSchema, { A1111_URL: 'http://a', REPLICATE_API_TOKEN: 'r8_x', WORKER_CONCURRENCY: '3' }).WORKER_CONCURRENCY,
    ).toBe(3);
  });

  test('naming an unconfigured backend, or none at all, is an error', () => {
    expect(errorLines(() => loadConfig(workerConfigSchema, { A1111_URL: 'http://a', BACKENDS: 'a1111,comfyui' }))).toEqual([
      'BACKENDS names comfyui, which is not configured',
    ]);
    expect(errorLines(() => loadConfig(workerConfigSchema, {}))[0]).toMatch(/^BACKENDS no backend is configured/);
    expect(errorLines(() => loadConfig(workerConfigSchema, { A1111_URL: 'http://a', BACKENDS: 'midjourney' }))[0]).toMatch(
      /^BACKENDS names must be from/,
    );
  });
});

import { isPlaintextRemoteRedis } from '../../core/io/redis-safety.js';

test('a worker reaching Redis on another machine without TLS is flagged; loopback and rediss:// are not', () => {
  expect(isPlaintextRemoteRedis('redis://10.0.0.5:6379')).toBe(true);
  expect(isPlaintextRemoteRedis('redis://redis.example.org:6379')).toBe(true);
  expect(isPlaintextRemoteRedis('rediss://worker:pw@redis.example.org:6380')).toBe(false);
  expect(isPlaintextRemoteRedis('redis://127.0.0.1:6379')).toBe(false);
  expect(isPlaintextRemoteRedis('redis://localhost:6379')).toBe(false);
  expect(isPlaintextRemoteRedis('redis://[::1]:6379')).toBe(false);
});

describe("a guild's own worker (WORKER_GUILD_ID)", () => {
  const guild = '2222222222222222222';
  test("serves the guild's key space with its boxes only: cloud keys in its environment are dropped", () => {
    const c = loadConfig(workerConfigSchema, {
      WORKER_GUILD_ID: guild,
      QUEUE_PREFIX: 'hosted',
      A1111_URL: 'http://gpu:7860',
      REPLICATE_API_TOKEN: 'r8_operator',
      HF_TOKEN: 'hf_x',
    });
    expect(c.QUEUE_PREFIX).toBe(`hosted:g:${guild}`);
    expect(c.BASE_QUEUE_PREFIX).toBe('hosted');
    expect(c.BACKENDS).toEqual(['a1111']);
    expect(c.IGNORED_CLOUD_KEYS).toBe(true);
    // One box, no cloud: one job at a time.
    expect(c.WORKER_CONCURRENCY).toBe(1);
  });

  test('with cloud keys only it refuses to start, and a malformed guild id is named', () => {
    expect(errorLines(() => loadConfig(workerConfigSchema, { WORKER_GUILD_ID: guild, REPLICATE_API_TOKEN: 'r8' }))[0]).toMatch(
      /^BACKENDS a guild's own worker runs its GPU boxes only: set A1111_URL or COMFYUI_URL/,
    );
    expect(errorLines(() => loadConfig(workerConfigSchema, { WORKER_GUILD_ID: 'abc', A1111_URL: 'http://gpu:7860' }))).toEqual([
      'WORKER_GUILD_ID must be a Discord id (17-20 digits)',
    ]);
  });

  test('SHARED_BOX_GUILDS is * by default, or a list of guild ids', () => {
    expect(loadConfig(botConfigSchema, bot).SHARED_BOX_GUILDS).toBe('*');
    expect(loadConfig(botConfigSchema, { ...bot, SHARED_BOX_GUILDS: `${guild}, 2222222222222222299` }).SHARED_BOX_GUILDS).toEqual([
      guild,
      '2222222222222222299',
    ]);
    expect(errorLines(() => loadConfig(botConfigSchema, { ...bot, SHARED_BOX_GUILDS: 'everyone' }))[0]).toMatch(/^SHARED_BOX_GUILDS /);
  });
});

test('a blank number (as .env.example writes unset settings) takes its default, never 0', () => {
  const bot = loadConfig(botConfigSchema, {
    DISCORD_TOKEN: 'x',
    DISCORD_APP_ID: '123456789012345678',
    DEFAULT_DAILY_IMAGES: '',
    DEFAULT_MONTHLY_BUDGET_USD: ' ',
    OVERFLOW_AFTER_S: '',
  });
  expect(bot).toMatchObject({ DEFAULT_DAILY_IMAGES: 25, DEFAULT_MONTHLY_BUDGET_USD: 5, OVERFLOW_AFTER_S: 60 });
  const worker = loadConfig(workerConfigSchema, { REPLICATE_API_TOKEN: 'r8_x', REPLICATE_USD_PER_SECOND: '', NSFW_THRESHOLD: '' });
  expect(worker.REPLICATE_USD_PER_SECOND).toBeGreaterThan(0);
  expect(worker.NSFW_THRESHOLD).toBe(0.7);
  // An explicit 0 is still 0.
  expect(
    loadConfig(botConfigSchema, { DISCORD_TOKEN: 'x', DISCORD_APP_ID: '123456789012345678', DEFAULT_DAILY_IMAGES: '0' })
      .DEFAULT_DAILY_IMAGES,
  ).toBe(0);
});

test('DISCORD_SHARD_IDS without DISCORD_SHARD_COUNT, or beyond it, is refused at start rather than run as the only shard', () => {
  const base = { DISCORD_TOKEN: 'x', DISCORD_APP_ID: '123456789012345678' };
  expect(() => loadConfig(botConfigSchema, { ...base, DISCORD_SHARD_IDS: '1' })).toThrow(/DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT/);
  expect(() => loadConfig(botConfigSchema, { ...base, DISCORD_SHARD_IDS: '0,2', DISCORD_SHARD_COUNT: '2' })).toThrow(
    /DISCORD_SHARD_IDS must be below DISCORD_SHARD_COUNT \(2\)/,
  );
  expect(loadConfig(botConfigSchema, { ...base, DISCORD_SHARD_IDS: '1', DISCORD_SHARD_COUNT: '2' })).toMatchObject({
    DISCORD_SHARD_IDS: [1],
    DISCORD_SHARD_COUNT: 2,
  });
});
