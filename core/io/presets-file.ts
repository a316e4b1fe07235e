import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';
import { BUILTIN_PRESETS, buildCatalog, describePresetsFileIssues, type PresetCatalog, presetsFileSchema } from '../presets.js';

/**
 * The presets in force: the built-ins, with PRESETS_FILE applied when it is set. Read and validated
 * once at start; a file that cannot be read or does not validate stops the process with one line
 * per problem (ConfigError), naming the preset and field.
 */
export function loadPresets(path: string | undefined): PresetCatalog {
  if (!path) return BUILTIN_PRESETS;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new ConfigError([`PRESETS_FILE cannot be read (${code === 'ENOENT' ? 'no such file' : (code ?? 'error')})`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([`PRESETS_FILE is not valid JSON (${err instanceof Error ? err.message : String(err)})`]);
  }
  const parsed = presetsFileSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(describePresetsFileIssues(parsed.error));
  const catalog = buildCatalog(parsed.data);
  if (catalog.list.length === 0) throw new ConfigError(['PRESETS_FILE removes every preset; keep at least one']);
  return catalog;
}
