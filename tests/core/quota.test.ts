import { expect, test } from 'vitest';
import { effectiveDailyLimit, msUntilUtcMidnight, usedToday, utcDay } from '../../core/quota.js';

test('a user override beats the guild default, which beats the deployment default; 0 is a real limit', () => {
  expect(effectiveDailyLimit({ userOverride: 0, guildDefault: 10, deploymentDefault: 25 })).toBe(0);
  expect(effectiveDailyLimit({ userOverride: null, guildDefault: 10, deploymentDefault: 25 })).toBe(10);
  expect(effectiveDailyLimit({ deploymentDefault: 25 })).toBe(25);
});

test('days roll over at UTC midnight whatever the local zone', () => {
  expect(utcDay(new Date('2026-11-23T23:59:59.999Z'))).toBe('2026-11-23');
  expect(utcDay(new Date('2026-11-24T00:00:00.000Z'))).toBe('2026-11-24');
  expect(msUntilUtcMidnight(new Date('2026-11-23T23:00:00Z'))).toBe(3_600_000);
  expect(usedToday({ day: '2026-11-23', images: 5 }, '2026-11-24')).toBe(0);
  expect(usedToday({ day: '2026-11-24', images: 5 }, '2026-11-24')).toBe(5);
});
