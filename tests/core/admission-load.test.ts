import { expect, test } from 'vitest';
import { type AdmissionLine, onArrival, onWaitedOut } from '../../core/admission-load.js';

const line = (l: Partial<AdmissionLine>): AdmissionLine => ({ running: 0, slots: 8, waiting: 0, maxWaiting: 2, answering: true, ...l });

test('an admission runs while a slot is free and nobody waits ahead of it', () => {
  expect(onArrival(line({ running: 7 }))).toBe('run');
  // A free slot is the first waiter's, not a newcomer's.
  expect(onArrival(line({ running: 7, waiting: 1 }))).toBe('wait');
  expect(onArrival(line({ running: 8 }))).toBe('wait');
});

test('with the line full and Postgres answering, a newcomer is told the bot is busy', () => {
  expect(onArrival(line({ running: 8, waiting: 1 }))).toBe('wait');
  expect(onArrival(line({ running: 8, waiting: 2 }))).toBe('busy');
});

test('with the line full and Postgres not answering, a newcomer waits for the database verdict instead', () => {
  expect(onArrival(line({ running: 8, waiting: 5, answering: false }))).toBe('wait');
});

test('an admission that waited out its turn hears busy only if Postgres answered others meanwhile', () => {
  expect(onWaitedOut(true)).toBe('busy');
  expect(onWaitedOut(false)).toBe('database_unavailable');
});
