import { describe, expect, test } from 'vitest';
import { admission, dailyLimit, imagesToday, msUntilUtcMidnight, queuePriority, recentImages, utcDay } from '../../core/quota.js';
import { QUOTA_CASES, TODAY } from '../fixtures/quota-cases.js';

test('a user override beats the guild default, which beats the deployment default; 0 is a real limit', () => {
  expect(dailyLimit({ userOverride: 0, guildDefault: 10 }, 25)).toBe(0);
  expect(dailyLimit({ userOverride: null, guildDefault: 10 }, 25)).toBe(10);
  expect(dailyLimit({ userOverride: null, guildDefault: null }, 25)).toBe(25);
});

test('days roll over at UTC midnight whatever the local zone', () => {
  expect(utcDay(new Date('2026-11-23T23:59:59.999Z'))).toBe('2026-11-23');
  expect(utcDay(new Date('2026-11-24T00:00:00.000Z'))).toBe('2026-11-24');
  expect(msUntilUtcMidnight(new Date('2026-11-23T23:00:00Z'))).toBe(3_600_000);
  expect(imagesToday({ day: '2026-11-23', images: 5, inFlight: 0 }, '2026-11-24')).toBe(0);
  expect(imagesToday({ day: '2026-11-24', images: 5, inFlight: 0 }, '2026-11-24')).toBe(5);
});

describe('admission (the same cases the reservation statement runs)', () => {
  test.for(QUOTA_CASES)('$rule', (c) => {
    const a = admission(c.facts, c.asked, TODAY, c.settings);
    if (c.expected.ok) expect(a).toMatchObject({ ok: true, usedToday: c.expected.usedAfter - c.asked });
    else expect(a).toMatchObject({ ok: false, reason: c.expected.reason });
  });
});

test('the member with fewer images today goes first; the priority stays within what BullMQ accepts', () => {
  expect(queuePriority(0)).toBeLessThan(queuePriority(3));
  expect(queuePriority(10_000_000)).toBe(2_000_000);
});

describe("a member's images of the last 24 hours (their turn in the queue)", () => {
  test("are yesterday's at midnight, then yesterday's weigh less as the day goes, nothing by its end", () => {
    expect(recentImages(0, 10, new Date('2026-11-23T00:00:00Z'))).toBe(10);
    expect(recentImages(3, 10, new Date('2026-11-23T12:00:00Z'))).toBe(8);
    expect(recentImages(3, 10, new Date('2026-11-23T23:59:59Z'))).toBe(3);
  });
});
