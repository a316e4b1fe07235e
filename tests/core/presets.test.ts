import { describe, expect, test } from 'vitest';
import { parseImagineOptions } from '../../core/generation.js';
import { BUILTIN_PRESETS, buildCatalog, describePresetsFileIssues, presetRun, presetsFileSchema } from '../../core/presets.js';

describe('presets per backend', () => {
  test('fast is FLUX schnell on Replicate and a Lightning recipe on a box, never base SDXL at 4 steps', () => {
    const fast = BUILTIN_PRESETS.find('fast')!;
    expect(presetRun(fast, 'replicate', {})).toMatchObject({ steps: 4, settings: { model: 'black-forest-labs/flux-schnell' } });
    expect(presetRun(fast, 'a1111', {})).toMatchObject({
      steps: 4,
      guidance: 1,
      settings: { needsCheckpoint: true, sampler: 'Euler', scheduler: 'SGM Uniform' },
    });
    expect(presetRun(fast, 'huggingface', {})).toBeNull();
  });

  test('a member’s steps and guidance win, capped at what a few-step model is made for', () => {
    const fast = BUILTIN_PRESETS.find('fast')!;
    expect(presetRun(fast, 'a1111', { steps: 6, guidance: 2 })).toMatchObject({ steps: 6, guidance: 2 });
    expect(presetRun(fast, 'a1111', { steps: 40 })).toMatchObject({ steps: 8 });
    expect(presetRun(BUILTIN_PRESETS.find('sdxl')!, 'comfyui', { steps: 40 })).toMatchObject({ steps: 40, guidance: 7 });
  });

  test('/imagine keeps the member’s own steps apart from the preset’s', () => {
    const own = parseImagineOptions({ prompt: 'x', preset: 'fast', steps: 6 }, () => 1);
    expect(own).toMatchObject({ steps: 6, memberSteps: 6, replicateModel: 'flux-schnell' });
    expect(own.memberGuidance).toBeUndefined();
    const preset = parseImagineOptions({ prompt: 'x', preset: 'photo' }, () => 1);
    expect(preset).toMatchObject({ steps: 35, guidance: 6 });
    expect(preset.memberSteps).toBeUndefined();
  });

  test('PRESETS_FILE names a checkpoint for a built-in, adds a preset, takes one off a family and removes another', () => {
    const file = presetsFileSchema.parse({
      fast: { a1111: { checkpoint: 'sdxl_lightning_4step.safetensors' } },
      animexl: { label: 'Anime XL', steps: 28, guidance: 5, a1111: { checkpoint: 'animagineXL.safetensors', sampler: 'Euler a' } },
      photo: { replicate: null },
      anime: null,
    });
    const catalog = buildCatalog(file);
    expect(catalog.find('fast')!.families.a1111).toMatchObject({
      checkpoint: 'sdxl_lightning_4step.safetensors',
      steps: 4,
      sampler: 'Euler',
    });
    expect(catalog.find('animexl')).toMatchObject({ label: 'Anime XL', steps: 28, families: { a1111: { sampler: 'Euler a' } } });
    expect(catalog.find('animexl')!.families.replicate).toBeUndefined();
    expect(catalog.find('photo')!.families.replicate).toBeUndefined();
    expect(catalog.find('anime')).toBeUndefined();
    expect(parseImagineOptions({ prompt: 'x', preset: 'animexl' }, () => 1, catalog)).toMatchObject({ preset: 'animexl', steps: 28 });
  });

  test('a malformed PRESETS_FILE is refused with one line per problem, naming the preset and field', () => {
    const parsed = presetsFileSchema.safeParse({
      fast: { a1111: { steps: 500, chekpoint: 'x' } },
      'Bad Name': {},
      flux: { replicate: { model: 'flux', version: 'abc' } },
    });
    expect(parsed.success).toBe(false);
    const lines = describePresetsFileIssues(parsed.error!);
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^PRESETS_FILE fast\.a1111\.steps: .*150/),
        expect.stringMatching(/^PRESETS_FILE fast\.a1111: unknown field\(s\) "chekpoint"/),
        expect.stringMatching(/^PRESETS_FILE Bad Name: preset names are/),
        expect.stringMatching(/^PRESETS_FILE flux\.replicate\.model: must be owner\/name/),
        expect.stringMatching(/^PRESETS_FILE flux\.replicate\.version: must be a 64-hex version id/),
      ]),
    );
  });
});
