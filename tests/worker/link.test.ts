import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { ConfigError, loadConfig, workerConfigSchema } from '../../core/config.js';
import { createLogger } from '../../core/io/logger.js';
import { guildScoped, resolveLink } from '../../worker/link.js';

const GUILD = '4444444444444444441';
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const silent = createLogger({ level: 'silent' });
const config = (env: Record<string, string>) =>
  loadConfig(workerConfigSchema, { A1111_URL: 'http://127.0.0.1:7860', REPLICATE_API_TOKEN: 'r8_operatorkey000000000', ...env });

test("a guild's worker serves the guild's key space with its GPU boxes only, never the cloud", () => {
  const c = guildScoped(config({ QUEUE_PREFIX: 'imagebot', WORKER_GUILD_ID: GUILD }));
  expect(c.QUEUE_PREFIX).toBe(`imagebot:g:${GUILD}`);
  expect(c.BACKENDS).toEqual(['a1111']);
  expect(guildScoped(config({})).BACKENDS).toEqual(['a1111', 'replicate']);
  expect(() => guildScoped(loadConfig(workerConfigSchema, { REPLICATE_API_TOKEN: 'r8_x', WORKER_GUILD_ID: GUILD }))).toThrow(
    /A1111_URL or COMFYUI_URL/,
  );
});

test('a token that is not one of ours, or a damaged credentials file, stops the start with what to do', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'imagebot-link-'));
  dirs.push(dir);
  const file = join(dir, 'worker-link.json');
  const typo = resolveLink(config({ WORKER_JOIN_TOKEN: 'ibj1.short', WORKER_CREDENTIALS_FILE: file }), silent);
  await expect(typo).rejects.toThrow(ConfigError);
  await expect(typo).rejects.toThrow(/not a join token from \/admin gpu link/);
  for (const damaged of ['{"v":1}', '{"v":1,"guildId":']) {
    writeFileSync(file, damaged);
    await expect(resolveLink(config({ WORKER_CREDENTIALS_FILE: file }), silent)).rejects.toThrow(/delete it and join again/);
  }
  // No token and no file: an operator's worker, as configured.
  rmSync(file);
  expect((await resolveLink(config({ WORKER_CREDENTIALS_FILE: file }), silent)).link).toBeUndefined();
});
