/**
 * NSFW and banned-word policy for prompts (pure). Matching runs on a normalised form of the text:
 * case, accents, Unicode look-alikes, leetspeak and separators between single letters are folded
 * away, and terms are matched on word boundaries so that innocent words are left alone.
 */
export type NsfwMode = 'strict' | 'nsfw-channels';

/** Explicit sexual terms refused in prompts unless NSFW is allowed in the channel. */
export const BUILT_IN_NSFW_TERMS: readonly string[] = [
  'nude', 'nudes', 'nudity', 'naked', 'topless', 'bottomless', 'nsfw', 'porn', 'porno', 'pornographic', 'hentai',
  'sex', 'sexual', 'intercourse', 'erotic', 'erotica', 'nipple', 'nipples', 'genitals', 'genitalia', 'penis', 'vagina',
  'vulva', 'clitoris', 'orgasm', 'masturbation', 'masturbating', 'blowjob', 'cumshot', 'ejaculation', 'fetish', 'bdsm',
  'lingerie', 'undressed', 'stripper', 'xxx',
];

/** Look-alike letters from other scripts and symbols, folded to Latin. */
const CONFUSABLES: Record<string, string> = {
  а: 'a', в: 'b', е: 'e', ё: 'e', к: 'k', м: 'm', н: 'h', о: 'o', р: 'p', с: 'c', т: 't', у: 'y', х: 'x', і: 'i', ї: 'i',
  ј: 'j', ѕ: 's', ԁ: 'd', ԛ: 'q', ԝ: 'w', ո: 'n', ս: 'u', օ: 'o', α: 'a', β: 'b', ε: 'e', η: 'n', ι: 'i', κ: 'k', ν: 'v',
  ο: 'o', ρ: 'p', τ: 't', υ: 'u', χ: 'x', ω: 'w', ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', ł: 'l', đ: 'd', ı: 'i',
};

/** Leetspeak digits read as the letters they stand for. */
const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b' };
/** Leetspeak symbols count as letters only inside a word (`n!pple`), not as punctuation after one (`cat!`). */
const LEET_SYMBOLS: Record<string, string> = { '@': 'a', $: 's', '!': 'i', '|': 'l', '+': 't', '€': 'e' };

const ZERO_WIDTH = /[\u200B-\u200D\u2060\uFEFF\u00AD]/g;

function foldChar(c: string): string {
  return CONFUSABLES[c] ?? LEET[c] ?? c;
}

/**
 * Words of the normalised text: NFKD (fullwidth and mathematical letters become plain), accents
 * dropped, look-alikes and leetspeak folded, lower case. Runs of single characters separated by
 * punctuation or spaces (`n.u.d.e`, `n u d e`) are joined into one word.
 */
export function normalizedWords(text: string): { words: string[]; spelled: string[] } {
  const base = [...text.normalize('NFKD').replace(/\p{M}/gu, '').replace(ZERO_WIDTH, '').toLowerCase()].map(foldChar).join('');
  const folded = base.replace(/[@$!|+€](?=[\p{L}\p{N}])/gu, (c) => LEET_SYMBOLS[c] ?? c);
  const tokens = folded.split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  const words: string[] = [];
  const spelled: string[] = [];
  let run = '';
  const flush = () => {
    // A run of spelled-out letters stands in the text as one word, and is also searched inside.
    if (run) words.push(run);
    if (run.length > 1) spelled.push(run);
    run = '';
  };
  for (const t of tokens) {
    if (t.length === 1) {
      run += t;
      continue;
    }
    flush();
    words.push(t);
  }
  flush();
  return { words, spelled };
}

/** The normalised text as one string of words, letters spelled out one by one joined into a word. */
export function normalizeForMatch(text: string): string {
  return normalizedWords(text).words.join(' ');
}

/**
 * Finds `term` on word boundaries among the words, or anywhere inside a run of spelled-out letters
 * (`a n.u.d.e` becomes the run `anude`, which hides `nude`).
 */
function containsTerm(text: { words: string[]; spelled: string[] }, term: string): boolean {
  const t = normalizeForMatch(term);
  if (!t) return false;
  if (` ${text.words.join(' ')} `.includes(` ${t} `)) return true;
  const squashed = t.replaceAll(' ', '');
  return squashed.length >= 3 && text.spelled.some((run) => run.includes(squashed));
}

export function mayPostNsfw(p: { mode: NsfwMode; channelNsfw: boolean }): boolean {
  return p.mode === 'nsfw-channels' && p.channelNsfw;
}

/**
 * Guild banned words always apply; the built-in NSFW terms apply unless the guild allows NSFW in
 * age-restricted channels and this is one.
 */
export function checkPrompt(
  prompt: string,
  policy: { mode: NsfwMode; channelNsfw: boolean; bannedWords: readonly string[] },
): { ok: true } | { ok: false; reason: 'banned_word' | 'nsfw'; term: string } {
  const text = normalizedWords(prompt);
  for (const w of policy.bannedWords) if (containsTerm(text, w)) return { ok: false, reason: 'banned_word', term: w };
  if (!mayPostNsfw(policy)) {
    for (const t of BUILT_IN_NSFW_TERMS) if (containsTerm(text, t)) return { ok: false, reason: 'nsfw', term: t };
  }
  return { ok: true };
}

/** Moderator input to a clean list: split on commas and new lines, trimmed, lower case, unique, capped. */
export function parseBannedWords(input: string): string[] {
  const words = input
    .split(/[,\n]/)
    .map((w) => w.trim().toLowerCase().slice(0, 64))
    .filter(Boolean);
  return [...new Set(words)].slice(0, 200);
}
