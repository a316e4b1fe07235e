import { describe, expect, test } from 'vitest';
import { releaseMemoryWhenQuiet } from '../../core/io/memory.js';

/** A loop whose use per window the test scripts; releases are counted. */
function scripted(windows: number[]) {
  let released = 0;
  const quiet = releaseMemoryWhenQuiet({ everyMs: 3_600_000, use: () => windows.shift() ?? 0, release: () => released++ });
  return {
    run(n: number) {
      for (let i = 0; i < n; i++) quiet.check();
      quiet.stop();
      return released;
    },
  };
}

describe('memory released once the bot is quiet', () => {
  test('after a busy spell, once, in the first quiet window', () => {
    expect(scripted([0.6, 0.9, 0.002, 0.001, 0.001]).run(5)).toBe(1);
  });

  test('never while busy, nor for a trickle of jobs that never makes a spell', () => {
    expect(scripted([0.5, 0.7, 0.9, 0.8]).run(4)).toBe(0);
    expect(scripted([0.004, 0.008, 0.002, 0.006, 0.001]).run(5)).toBe(0);
  });

  test('again after each new spell', () => {
    expect(scripted([0.5, 0, 0, 0.4, 0.2, 0, 0]).run(7)).toBe(2);
  });
});
