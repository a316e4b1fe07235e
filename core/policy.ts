/**
 * NSFW and banned-word policy for prompts (pure). Matching runs on a normalised form of the text:
 * case, accents, Unicode look-alikes, leetspeak, invisible characters and separators between single
 * letters are folded away, and terms are matched on word boundaries so that innocent words
 * ('class', 'Scunthorpe') are left alone.
 */
/** strict: NSFW never allowed; nsfw-channels: allowed in age-restricted channels only. */
export const NSFW_MODES = ['strict', 'nsfw-channels'] as const;
export type NsfwMode = (typeof NSFW_MODES)[number];

/** Explicit sexual terms refused in prompts unless NSFW is allowed in the channel (plurals match too). */
export const BUILT_IN_NSFW_TERMS: readonly string[] = [
  'nude',
  'nudity',
  'naked',
  'topless',
  'bottomless',
  'nsfw',
  'porn',
  'porno',
  'pornography',
  'pornographic',
  'hentai',
  'sex',
  'sexual',
  'intercourse',
  'erotic',
  'erotica',
  'nipple',
  'genitals',
  'genitalia',
  'penis',
  'vagina',
  'vulva',
  'clitoris',
  'testicles',
  'orgasm',
  'orgy',
  'masturbation',
  'masturbating',
  'blowjob',
  'handjob',
  'cumshot',
  'ejaculation',
  'dildo',
  'fetish',
  'bdsm',
  'lingerie',
  'undressed',
  'upskirt',
  'stripper',
  'xxx',
];

/**
 * Look-alike letters from other scripts, folded to Latin. Applied before and after lower-casing:
 * some capitals (Greek Ν, Η) look like a different Latin letter than their lower case (ν, η).
 */
const CONFUSABLES: Record<string, string> = {
  а: 'a',
  в: 'b',
  е: 'e',
  ё: 'e',
  һ: 'h',
  к: 'k',
  м: 'm',
  н: 'h',
  о: 'o',
  п: 'n',
  р: 'p',
  с: 'c',
  т: 't',
  у: 'y',
  х: 'x',
  і: 'i',
  ї: 'i',
  ј: 'j',
  ѕ: 's',
  ӏ: 'l',
  ԁ: 'd',
  ԛ: 'q',
  ԝ: 'w',
  ո: 'n',
  ս: 'u',
  օ: 'o',
  հ: 'h',
  α: 'a',
  β: 'b',
  ε: 'e',
  η: 'n',
  ι: 'i',
  κ: 'k',
  μ: 'u',
  ν: 'v',
  ο: 'o',
  ρ: 'p',
  τ: 't',
  υ: 'u',
  χ: 'x',
  ω: 'w',
  ϲ: 'c',
  Ν: 'n',
  Η: 'h',
  Υ: 'y',
  Ζ: 'z',
  Μ: 'm',
  ɑ: 'a',
  ɡ: 'g',
  ɩ: 'i',
  ı: 'i',
  ß: 'ss',
  æ: 'ae',
  œ: 'oe',
  ø: 'o',
  ł: 'l',
  đ: 'd',
};

/** Leetspeak digits read as letters, inside words only: a bare number (`455 hp`) stays a number. */
const LEET_DIGITS: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b' };
const LEET_SYMBOLS: Record<string, string> = { '@': 'a', $: 's', '!': 'i', '|': 'l', '+': 't', '€': 'e' };
/**
 * `@ $ | €` are letters next to a letter on either side (`@ss`, `a$$`); `! +` only before one
 * (`n!pple`), since after a word they are mostly punctuation (`cat!`, `c++`).
 */
const SYMBOLS_AS_LETTERS = /[@$|€]+(?=[\p{L}\p{N}])|(?<=[\p{L}\p{N}])[@$|€]+|[!+]+(?=[\p{L}\p{N}])/gu;
const HAS_LETTER = /\p{L}/u;
const STRETCHED = /(\p{L})\1\1/u;

/** One reading of the prompt. `1` may be i or l, and a symbol a letter or a separator (`n|u|d|e`). */
interface Reading {
  one: 'i' | 'l';
  symbols: 'letters' | 'separators';
}
const PRIMARY: Reading = { one: 'i', symbols: 'letters' };

/** Words of one reading; `spelled[i]` marks a word joined from single letters (`n.u.d.e`). */
interface Words {
  words: string[];
  spelled: boolean[];
}

const fold = (s: string) => [...s].map((c) => CONFUSABLES[c] ?? c).join('');

/** NFKD (fullwidth, circled and mathematical letters become plain), no marks, no invisible characters. */
function baseForm(text: string): string {
  return fold(fold(text.normalize('NFKD').replace(/[\p{M}\p{Cf}]/gu, '')).toLowerCase());
}

function readWords(base: string, r: Reading): Words {
  const text = r.symbols === 'letters' ? base.replace(SYMBOLS_AS_LETTERS, (m) => [...m].map((c) => LEET_SYMBOLS[c] ?? c).join('')) : base;
  const leet = (t: string) => (HAS_LETTER.test(t) ? t.replace(/\d/g, (d) => (d === '1' ? r.one : (LEET_DIGITS[d] ?? d))) : t);
  const out: Words = { words: [], spelled: [] };
  let run: string[] = [];
  const flush = () => {
    // A run of single characters stands in the text as one word (`n u d e` reads as `nude`).
    if (run.length) {
      out.words.push(leet(run.join('')));
      out.spelled.push(run.length > 1);
    }
    run = [];
  };
  for (const t of text.split(/[^\p{L}\p{N}]+/u)) {
    if (!t) continue;
    if (t.length === 1) {
      run.push(t);
      continue;
    }
    flush();
    out.words.push(leet(t));
    out.spelled.push(false);
  }
  flush();
  return out;
}

/** The distinct readings worth checking for this text (most texts have one). */
function readings(text: string): Haystack[] {
  const base = baseForm(text);
  const ones: Reading['one'][] = base.includes('1') ? ['i', 'l'] : ['i'];
  const symbols: Reading['symbols'][] = /[@$!|+€]/.test(base) ? ['letters', 'separators'] : ['letters'];
  const seen = new Map<string, Words>();
  for (const one of ones) {
    for (const s of symbols) {
      const w = readWords(base, { one, symbols: s });
      seen.set(w.words.join(' '), w);
    }
  }
  return [...seen.values()].map(haystack);
}

/**
 * The text as a string of words: NFKD, no accents or invisible characters, look-alikes and
 * leetspeak folded, lower case, and single letters separated by spaces or punctuation joined into
 * one word (`N.U.D.E` → `nude`). Other word boundaries are kept.
 */
export function normalizeForMatch(text: string): string {
  return readWords(baseForm(text), PRIMARY).words.join(' ');
}

const squeeze = (s: string) => s.replace(/(\p{L})\1+/gu, '$1');

const PLURALS = ['', 's', 'es'];
const stemCache = new Map<string, string[]>();

/**
 * A term's stems: itself and, for a phrase, the phrase without spaces (`r.e.d.n.o.s.e`). Cached
 * because the same few hundred terms are checked against every prompt.
 */
function stems(term: string): string[] {
  let found = stemCache.get(term);
  if (!found) {
    const t = normalizeForMatch(term);
    found = !t ? [] : t.includes(' ') ? [t, t.replaceAll(' ', '')] : [t];
    if (stemCache.size >= 10_000) stemCache.clear();
    stemCache.set(term, found);
  }
  return found;
}

/** One reading prepared for searching: the words as one string and where words start, end and are spelled. */
interface Haystack extends Words {
  text: string;
  edges: Set<number>;
  inner: Set<number>;
  /** Words with a letter repeated three times or more, squeezed (`nuuude` → `nude`). */
  stretched: { squeezed: string; spelled: boolean }[];
}

function haystack(w: Words): Haystack {
  const edges = new Set<number>();
  const inner = new Set<number>();
  let pos = 0;
  w.words.forEach((word, i) => {
    edges.add(pos).add(pos + word.length);
    if (w.spelled[i]) for (let p = pos + 1; p < pos + word.length; p++) inner.add(p);
    pos += word.length + 1;
  });
  const stretched = w.words.flatMap((word, i) =>
    STRETCHED.test(word) ? [{ squeezed: squeeze(word), spelled: w.spelled[i] === true }] : [],
  );
  return { ...w, text: w.words.join(' '), edges, inner, stretched };
}

/**
 * Whether a form occurs on word boundaries. A boundary may also fall inside a run of spelled-out
 * letters (`a n.u.d.e` is the run `anude`), for forms of three letters or more.
 */
function onBoundaries(h: Haystack, form: string): boolean {
  const long = form.replaceAll(' ', '').length >= 3;
  const boundary = (p: number) => h.edges.has(p) || (long && h.inner.has(p));
  for (let at = h.text.indexOf(form); at !== -1; at = h.text.indexOf(form, at + 1)) {
    if (boundary(at) && boundary(at + form.length)) return true;
  }
  return false;
}

/** Stretched letters (`nuuude`, `sexxx`): a word equal to the form once repeated letters are squeezed. */
function stretchedMatch(h: Haystack, form: string): boolean {
  if (form.length < 3) return false;
  const sq = squeeze(form);
  return h.stretched.some((s) => (s.spelled ? s.squeezed.includes(sq) : s.squeezed === sq));
}

/** Whether a stem or its plural (`nudes`, `red noses`) is in one reading of the prompt. */
function occurs(h: Haystack, stem: string): boolean {
  const forms = PLURALS.map((p) => stem + p);
  // Every form contains the stem, so one substring test rules most terms out.
  if (h.text.includes(stem) && forms.some((f) => onBoundaries(h, f))) return true;
  return h.stretched.length > 0 && !stem.includes(' ') && forms.some((f) => stretchedMatch(h, f));
}

function containsTerm(text: Haystack[], term: string): boolean {
  return stems(term).some((stem) => text.some((h) => occurs(h, stem)));
}

/** Whether NSFW prompts and outputs are allowed: only in age-restricted channels of an `nsfw-channels` guild. */
export function mayPostNsfw(p: { mode: NsfwMode; channelNsfw: boolean }): boolean {
  return p.mode === 'nsfw-channels' && p.channelNsfw;
}

/**
 * Checks a prompt before anything is queued. Guild banned words (which may be phrases) always
 * apply; the built-in NSFW terms apply unless {@link mayPostNsfw}. Reports the first term found.
 */
export function checkPrompt(
  prompt: string,
  policy: { mode: NsfwMode; channelNsfw: boolean; bannedWords: readonly string[] },
): { ok: true } | { ok: false; reason: 'banned_word' | 'nsfw'; term: string } {
  const text = readings(prompt);
  for (const w of policy.bannedWords) if (containsTerm(text, w)) return { ok: false, reason: 'banned_word', term: w };
  if (!mayPostNsfw(policy)) {
    for (const t of BUILT_IN_NSFW_TERMS) if (containsTerm(text, t)) return { ok: false, reason: 'nsfw', term: t };
  }
  return { ok: true };
}

/**
 * The prompt rule for a request. The guild's banned words apply to the prompt and the negative
 * prompt alike; the built-in NSFW terms apply to the prompt only, since members often list NSFW
 * words in the negative prompt to steer away from them.
 */
export function checkRequestText(
  request: { prompt: string; negative: string },
  policy: { mode: NsfwMode; channelNsfw: boolean; bannedWords: readonly string[] },
): { ok: true } | { ok: false; reason: 'banned_word' | 'nsfw'; term: string } {
  const verdicts = [
    checkPrompt(request.prompt, policy),
    checkPrompt(request.negative, { ...policy, mode: 'nsfw-channels', channelNsfw: true }),
  ];
  return verdicts.find((v) => !v.ok) ?? { ok: true };
}

/** Moderator input to a clean list: split on commas and new lines, trimmed, lower case, unique, each ≤ 64 chars, ≤ 200 words. */
export function parseBannedWords(input: string): string[] {
  const words = input
    .split(/[,\n]/)
    .map((w) => w.trim().toLowerCase().slice(0, 64).trim())
    .filter(Boolean);
  return [...new Set(words)].slice(0, 200);
}
