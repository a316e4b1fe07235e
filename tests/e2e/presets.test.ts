import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import { PERMS } from '../fakes/discord/server.js';
import type { FakeInteraction, FakeMessage } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, buttonId, GUILD_ID, System } from './harness.js';

let sys: System | undefined;
let dir: string | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

const MODELS = [
  { name: 'sd_xl_base_1.0', hash: '31e35c80fc' },
  { name: 'sdxl_lightning_4step', hash: 'a9ce1a3b17' },
];

async function presetsFile(content: unknown): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'imagebot-presets-'));
  const path = join(dir, 'presets.json');
  await writeFile(path, JSON.stringify(content));
  return path;
}

async function privateReply(s: System, i: FakeInteraction): Promise<FakeMessage> {
  return s.discord.waitFor(() => {
    const m = i.original();
    return m && (m.content || m.embeds.length > 0) ? m : undefined;
  });
}

const generationBodies = (s: System) =>
  s.a1111.requests.filter((r) => r.path === '/sdapi/v1/txt2img').map((r) => r.json as Record<string, unknown>);

describe('presets', () => {
  test('fast runs on the box with the Lightning checkpoint the owner named and its recipe; Info and /admin stats name the model', async ({
    db,
    redisPrefix,
  }) => {
    const file = await presetsFile({ fast: { a1111: { checkpoint: 'sdxl_lightning_4step.safetensors' } } });
    sys = await System.start({ db, redisPrefix, a1111: { models: MODELS }, env: { PRESETS_FILE: file } });
    await sys.worker!.statusOnce();
    const fast = await sys.finalReply(await sys.imagine({ prompt: 'a quick fox', preset: 'fast' }));
    const mine = await sys.finalReply(await sys.imagine({ prompt: 'a slower fox', preset: 'fast', steps: 6, guidance: 2 }));
    const photo = await sys.finalReply(await sys.imagine({ prompt: 'a fox photo', preset: 'photo', steps: 3 }));
    const [b1, b2, b3] = generationBodies(sys);
    expect(b1).toMatchObject({
      steps: 4,
      cfg_scale: 1,
      sampler_name: 'Euler',
      scheduler: 'SGM Uniform',
      override_settings: { sd_model_checkpoint: 'sdxl_lightning_4step.safetensors' },
    });
    // The member's own steps and guidance win over the preset's.
    expect(b2).toMatchObject({ steps: 6, cfg_scale: 2, override_settings: { sd_model_checkpoint: 'sdxl_lightning_4step.safetensors' } });
    // photo is SDXL on the box's own model, with the preset's sampler defaults.
    expect(b3).toMatchObject({ steps: 3, cfg_scale: 6, sampler_name: 'DPM++ 2M', scheduler: 'Karras' });
    expect(b3).not.toHaveProperty('override_settings');

    const field = (m: FakeMessage, name: string) => m.embeds[0].fields.find((f: { name: string }) => f.name === name)?.value;
    expect(field(fast, 'Model')).toBe('sdxl_lightning_4step [a9ce1a3b17]');
    expect(field(mine, 'Model')).toBe('sdxl_lightning_4step [a9ce1a3b17]');
    expect(field(photo, 'Model')).toBe('sd_xl_base_1.0 [31e35c80fc]');

    const info = await sys.discord.buttonPress({ customId: buttonId(fast, 'Info'), messageId: fast.id, user: ALICE });
    const text = (await privateReply(sys, info)).content;
    expect(text).toContain('**Model:** sdxl_lightning_4step [a9ce1a3b17]');
    expect(text).toContain('**Sampler:** Euler (SGM Uniform)');
    const row = await db.prisma.job.findFirstOrThrow({ where: { id: /job ([0-9a-f-]+)/.exec(fast.embeds[0].footer.text)![1] } });
    expect(row).toMatchObject({ model: 'sdxl_lightning_4step', modelVersion: 'a9ce1a3b17', sampler: 'Euler (SGM Uniform)' });

    const stats = await sys.discord.slashCommand({
      name: 'admin',
      subcommand: 'stats',
      options: [],
      memberPermissions: PERMS.manager,
      user: ALICE,
      guildId: GUILD_ID,
    });
    const byModel = (await privateReply(sys, stats)).embeds[0].fields.find((f: { name: string }) => f.name === 'Jobs by model').value;
    expect(byModel).toContain('sdxl_lightning_4step [a9ce1a3b17]: 2 jobs');
    expect(byModel).toContain('sd_xl_base_1.0 [31e35c80fc]: 1 jobs');
  });

  test('fast with steps:30 runs the 8 steps its model is made for, and the result and Info show the 8 and that 30 was asked', async ({
    db,
    redisPrefix,
  }) => {
    const file = await presetsFile({ fast: { a1111: { checkpoint: 'sdxl_lightning_4step.safetensors' } } });
    sys = await System.start({ db, redisPrefix, a1111: { models: MODELS }, env: { PRESETS_FILE: file } });
    await sys.worker!.statusOnce();
    const msg = await sys.finalReply(await sys.imagine({ prompt: 'a cat', preset: 'fast', steps: 30 }));
    expect(generationBodies(sys)[0]).toMatchObject({ steps: 8, cfg_scale: 1 });
    const field = (name: string) => msg.embeds[0].fields.find((f: { name: string }) => f.name === name)?.value;
    expect(field('Steps')).toBe("8 (asked 30; the preset's most)");
    expect(field('Guidance')).toBe('1');
    const info = await sys.discord.buttonPress({ customId: buttonId(msg, 'Info'), messageId: msg.id, user: ALICE });
    expect((await privateReply(sys, info)).content).toContain("**Steps:** 8 (asked 30; the preset's most) · **Guidance:** 1");
  });

  test('a preset no live backend can run is not offered in autocomplete, and typed it is refused clearly with nothing queued', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    await sys.worker!.statusOnce();
    const ac = await sys.discord.autocomplete({
      name: 'imagine',
      options: [{ name: 'prompt', type: 3, value: 'x' }],
      focused: 'preset',
      user: ALICE,
    });
    const offered = ((await ac.waitForCallback()).data.choices as { value: string }[]).map((c) => c.value);
    expect(offered).toEqual(['sdxl', 'photo', 'anime']);
    const typed = await sys.imagine({ prompt: 'a quick fox', preset: 'fast' });
    // At once, or after a public deferral when a busy machine admits slowly: the member alone reads it.
    const seen = await sys.answerOf(typed);
    expect(seen.flags & 64).toBe(64);
    expect(seen.content).toContain('can run the preset `fast`');
    expect(seen.content).toContain('`sdxl`');
    expect(await db.prisma.job.count()).toBe(0);
    expect(generationBodies(sys)).toHaveLength(0);
  });

  test('a PRESETS_FILE that does not validate stops the worker with one line per problem', async ({ db, redisPrefix }) => {
    const file = await presetsFile({ fast: { a1111: { steps: 500 } }, 'Bad Name': {} });
    sys = await System.start({ db, redisPrefix, worker: 'none', bot: 'none', env: { PRESETS_FILE: file } });
    const failed = await sys.spawn('worker').then(
      () => undefined,
      (err: unknown) => String(err),
    );
    expect(failed).toBeDefined();
    const out = sys.procs[0]!.logs.join('\n');
    expect(out).toContain('invalid configuration: PRESETS_FILE fast.a1111.steps');
    expect(out).toContain('invalid configuration: PRESETS_FILE Bad Name: preset names are');
  });
});
