/** Placeholder until the full normaliser lands: exact, case-insensitive word matching. */
export type NsfwMode = 'strict' | 'nsfw-channels';
export const BUILT_IN_NSFW_TERMS: readonly string[] = ['nude', 'naked', 'nsfw', 'porn'];
export function normalizeForMatch(text: string): string {
  return text.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
}
export function mayPostNsfw(p: { mode: NsfwMode; channelNsfw: boolean }): boolean {
  return p.mode === 'nsfw-channels' && p.channelNsfw;
}
export function checkPrompt(
  prompt: string,
  policy: { mode: NsfwMode; channelNsfw: boolean; bannedWords: readonly string[] },
): { ok: true } | { ok: false; reason: 'banned_word' | 'nsfw'; term: string } {
  const words = new Set(normalizeForMatch(prompt).split(/[^\p{L}\p{N}]+/u));
  for (const w of policy.bannedWords) if (words.has(w)) return { ok: false, reason: 'banned_word', term: w };
  if (!mayPostNsfw(policy)) for (const t of BUILT_IN_NSFW_TERMS) if (words.has(t)) return { ok: false, reason: 'nsfw', term: t };
  return { ok: true };
}
export function parseBannedWords(input: string): string[] {
  return [...new Set(input.split(/[,\n]/).map((w) => w.trim().toLowerCase()).filter(Boolean))].slice(0, 200);
}
