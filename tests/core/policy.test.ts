import { describe, expect, test } from 'vitest';
import { checkPrompt, normalizeForMatch, parseBannedWords } from '../../core/policy.js';

const strict = { mode: 'strict' as const, channelNsfw: false, bannedWords: [] as string[] };

describe('prompt filter', () => {
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
    'ո u d e', // Armenian ո
    'a n.u.d.e woman', // spelled out next to a one-letter word
    'n!pples',
  ])('evasion %j is caught', (prompt) => {
    expect(checkPrompt(prompt, strict)).toMatchObject({ ok: false, reason: 'nsfw' });
  });

  test.each(['a class of students', 'an assistant at a desk', 'Essex countryside', 'sextant on a ship deck', 'a nuder-looking font'])(
    'innocent %j passes',
    (prompt) => {
      expect(checkPrompt(prompt, { ...strict, bannedWords: ['ass', 'sex'] })).toEqual({ ok: true });
    },
  );

  test('guild banned words, including phrases, apply everywhere, even in age-restricted channels', () => {
    const p = { mode: 'nsfw-channels' as const, channelNsfw: true, bannedWords: ['clown', 'red nose'] };
    expect(checkPrompt('a CL0WN at a party', p)).toMatchObject({ ok: false, reason: 'banned_word', term: 'clown' });
    expect(checkPrompt('a big r.e.d nose', p)).toMatchObject({ ok: false, reason: 'banned_word', term: 'red nose' });
    expect(checkPrompt('a nose that is red', p)).toEqual({ ok: true });
  });

  test('built-in terms are skipped only in nsfw-channels mode in an age-restricted channel', () => {
    expect(checkPrompt('nude figure study', { ...strict, mode: 'nsfw-channels', channelNsfw: true })).toEqual({ ok: true });
    expect(checkPrompt('nude figure study', { ...strict, mode: 'nsfw-channels', channelNsfw: false })).toMatchObject({ ok: false });
    expect(checkPrompt('nude figure study', { ...strict, channelNsfw: true })).toMatchObject({ ok: false });
  });

  test('normalisation folds case, accents, leetspeak and spaced letters', () => {
    expect(normalizeForMatch('Ünïcödé  Ph0t0 of the C.A.T! n!pple')).toBe('unicode photo of the cat nipple');
  });

  test('banned-word input is trimmed, lower-cased, deduplicated and capped', () => {
    expect(parseBannedWords(' Dragon, castle\nDRAGON,, ')).toEqual(['dragon', 'castle']);
    expect(parseBannedWords(Array.from({ length: 300 }, (_, i) => `w${i}`).join(','))).toHaveLength(200);
    expect(parseBannedWords('x'.repeat(100))[0]).toHaveLength(64);
  });
});
