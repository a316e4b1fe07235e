import { describe, expect, test } from 'vitest';
import { BUILT_IN_NSFW_TERMS, checkPrompt, mayPostNsfw, normalizeForMatch, parseBannedWords } from '../../core/policy.js';

const strict = { mode: 'strict' as const, channelNsfw: false, bannedWords: [] as string[] };

describe('normalizeForMatch', () => {
  test.each([
    ['NUDE', 'nude'],
    ['nüde', 'nude'],
    ['n.u.d.e', 'nude'],
    ['n u d e', 'nude'],
    ['n_u-d.e', 'nude'],
    ['nud3', 'nude'],
    ['nudе', 'nude'], // Cyrillic е
    ['ոude', 'nude'], // Armenian ո
    ['ΝUDE', 'nude'], // Greek capital Nu (its lower case ν would read as v)
    ['ｎｕｄｅ', 'nude'], // fullwidth
    ['𝐧𝐮𝐝𝐞', 'nude'], // mathematical bold
    ['nu\u200Dd\u200Be', 'nude'], // zero-width joiner and space
    ['nu\u00ADde', 'nude'], // soft hyphen
    ['n!pple', 'nipple'],
    ['@ss and a$$', 'ass and ass'],
  ])('%j → %j', (input, expected) => {
    expect(normalizeForMatch(input)).toBe(expected);
  });

  test('keeps word boundaries, leaves bare numbers and trailing punctuation alone', () => {
    expect(normalizeForMatch('Ünïcödé  Ph0t0 of the C.A.T! n!pple')).toBe('unicode photo of the cat nipple');
    expect(normalizeForMatch('a 455 hp car, 1024 x 768, wow!!! c++')).toBe('a 455 hp car 1024 x 768 wow c');
  });
});

describe('checkPrompt', () => {
  test.each([
    'NUDE woman',
    'a nüde statue',
    'n.u.d.e beach',
    'n u d e',
    'n_u-d.e',
    'nud3 model',
    'nudе painting', // Cyrillic е
    'ｎｕｄｅ', // fullwidth
    'nu\u200Bde', // zero-width space inside
    'nu\u200Dde', // zero-width joiner inside
    'ո u d e', // Armenian ո
    'a n.u.d.e woman', // spelled out next to a one-letter word
    'n!pples',
    'n|u|d|e', // a leet letter used as a separator
    '1ingerie', // 1 read as l
    'nuuuude', // stretched
    'penises', // plural
    'p 0 r n',
  ])('evasion %j is caught', (prompt) => {
    expect(checkPrompt(prompt, strict)).toMatchObject({ ok: false, reason: 'nsfw' });
  });

  test.each([
    'a class of students',
    'an assistant at a desk',
    'a bass guitar under glass',
    'Essex countryside',
    'Scunthorpe town centre',
    'sextant on a ship deck',
    'a nuder-looking font',
    'a 455 hp muscle car',
    'as seen on tv, zzz',
    'a pen is on the desk',
  ])('innocent %j passes', (prompt) => {
    expect(checkPrompt(prompt, { ...strict, bannedWords: ['ass', 'sex', 'cunt', 'penis'] })).toEqual({ ok: true });
  });

  test('banned words themselves are caught through the same evasions', () => {
    const p = { ...strict, bannedWords: ['ass', 'cunt'] };
    for (const prompt of ['a$$', '@ss', 'a s s', 'ASSES', 'c.u.n.t', 'cμnt']) {
      expect(checkPrompt(prompt, p)).toMatchObject({ ok: false, reason: 'banned_word' });
    }
  });

  test('guild banned words, including phrases, apply everywhere, even in age-restricted channels', () => {
    const p = { mode: 'nsfw-channels' as const, channelNsfw: true, bannedWords: ['clown', 'red nose'] };
    expect(checkPrompt('a CL0WN at a party', p)).toMatchObject({ ok: false, reason: 'banned_word', term: 'clown' });
    expect(checkPrompt('a big r.e.d nose', p)).toMatchObject({ ok: false, reason: 'banned_word', term: 'red nose' });
    expect(checkPrompt('a r.e.d nose', p)).toMatchObject({ ok: false, term: 'red nose' });
    expect(checkPrompt('r.e.d.n.o.s.e', p)).toMatchObject({ ok: false, term: 'red nose' });
    expect(checkPrompt('two Red  Noses', p)).toMatchObject({ ok: false, term: 'red nose' });
    expect(checkPrompt('a nose that is red', p)).toEqual({ ok: true });
    expect(checkPrompt('a shred nosegay', p)).toEqual({ ok: true });
  });

  test('built-in terms are skipped only in nsfw-channels mode in an age-restricted channel', () => {
    expect(checkPrompt('nude figure study', { ...strict, mode: 'nsfw-channels', channelNsfw: true })).toEqual({ ok: true });
    expect(checkPrompt('nude figure study', { ...strict, mode: 'nsfw-channels', channelNsfw: false })).toMatchObject({ ok: false });
    expect(checkPrompt('nude figure study', { ...strict, channelNsfw: true })).toMatchObject({ ok: false, reason: 'nsfw', term: 'nude' });
    expect(mayPostNsfw({ mode: 'nsfw-channels', channelNsfw: true })).toBe(true);
    expect(mayPostNsfw({ mode: 'nsfw-channels', channelNsfw: false })).toBe(false);
    expect(mayPostNsfw({ mode: 'strict', channelNsfw: true })).toBe(false);
  });

  test('a guild banned word wins over the built-in list and is reported as such', () => {
    expect(checkPrompt('nude clown', { ...strict, bannedWords: ['clown'] })).toMatchObject({ reason: 'banned_word', term: 'clown' });
  });

  test('every built-in term is caught on its own and ordinary prompts pass', () => {
    for (const t of BUILT_IN_NSFW_TERMS) expect(checkPrompt(`a ${t}`, strict)).toMatchObject({ ok: false, term: t });
    expect(checkPrompt('a watercolor fox in a snowy forest, 4k, highly detailed', strict)).toEqual({ ok: true });
  });
});

describe('parseBannedWords', () => {
  test('trimmed, lower-cased, deduplicated, empties dropped, capped', () => {
    expect(parseBannedWords(' Dragon, castle\nDRAGON,, \n red nose ')).toEqual(['dragon', 'castle', 'red nose']);
    expect(parseBannedWords(Array.from({ length: 300 }, (_, i) => `w${i}`).join(','))).toHaveLength(200);
    expect(parseBannedWords('x'.repeat(100))[0]).toHaveLength(64);
    expect(parseBannedWords(' , \n ')).toEqual([]);
  });
});
