import { describe, expect, test } from 'vitest';
import {
  type DurationSample,
  DurationWindow,
  type EtaInput,
  estimateEta,
  liveSlots,
  type SlotReport,
  samplesInUse,
} from '../../core/eta.js';
import { etaRange, text } from '../../core/messages.js';

const S = 1000;
/** n jobs of `ms` each making `count` images. */
const same = (n: number, ms: number, count = 1, backend?: string): DurationSample[] =>
  Array.from({ length: n }, () => ({ ms, count, ...(backend ? { backend } : {}) }));
/** The range, or null when there is none (why is asserted with estimateEta itself). */
const eta = (o: Partial<EtaInput>) => {
  const e = estimateEta({ ahead: 0, running: 0, slots: 1, samples: same(10, 10 * S), count: 1, ...o });
  return typeof e === 'string' ? null : e;
};
const mid = (e: { lowMs: number; highMs: number } | null) => (e!.lowMs + e!.highMs) / 2;

describe('estimateEta', () => {
  test('no finished job to learn from, or no live slot: no estimate rather than an invented one', () => {
    expect(eta({ samples: [] })).toBeNull();
    expect(eta({ slots: 0, ahead: 3 })).toBeNull();
    expect(eta({ slots: Number.NaN })).toBeNull();
    // Junk samples count as no samples.
    expect(
      eta({
        samples: [
          { ms: Number.NaN, count: 1 },
          { ms: -5, count: 1 },
          { ms: 100, count: 0 },
        ],
      }),
    ).toBeNull();
  });

  test('without a range it says why: no live slot first (the job will not move, whatever the run times), else no run to learn from', () => {
    const base = { ahead: 2, running: 0, count: 1 };
    expect(estimateEta({ ...base, slots: 0, samples: same(2, 8 * S) })).toBe('no-worker');
    expect(estimateEta({ ...base, slots: 0, samples: [] })).toBe('no-worker');
    expect(estimateEta({ ...base, slots: 1, samples: [] })).toBe('no-runs');
  });

  test('an idle slot and an empty queue: just this job’s own run, never faster than the fastest seen', () => {
    const e = eta({})!;
    expect(e.lowMs).toBe(10 * S);
    expect(e.highMs).toBeGreaterThan(10 * S);
    expect(e.highMs).toBeLessThan(13 * S);
  });

  test('count-aware: four images take about four times one, from per-image times of mixed jobs', () => {
    const samples = [...same(5, 8 * S, 1), ...same(5, 32 * S, 4)];
    const one = eta({ samples, count: 1 })!;
    const four = eta({ samples, count: 4 })!;
    expect(mid(one)).toBeGreaterThan(7 * S);
    expect(mid(one)).toBeLessThan(10 * S);
    expect(mid(four) / mid(one)).toBeCloseTo(4, 0);
    expect(four.lowMs).toBeGreaterThanOrEqual(32 * S);
  });

  test('one slot: a running job of unknown age counts half a job, every job ahead a whole one', () => {
    // 10 s jobs: 5 s left on the running one, 2 × 10 s ahead, 10 s for this one.
    const e = eta({ running: 1, ahead: 2 })!;
    expect(e.lowMs).toBeLessThan(35 * S);
    expect(e.highMs).toBeGreaterThan(35 * S);
    expect(mid(e)).toBeCloseTo(35 * S, -3);
    expect(e.highMs - e.lowMs).toBeLessThan(20 * S);
  });

  test('a running job whose start was seen: its remaining time, and a little when it overruns', () => {
    const fresh = eta({ running: 1, runningElapsedMs: [1 * S] })!;
    const almost = eta({ running: 1, runningElapsedMs: [9 * S] })!;
    const over = eta({ running: 1, runningElapsedMs: [60 * S] })!;
    expect(mid(fresh)).toBeCloseTo(19 * S, -3);
    expect(mid(almost)).toBeCloseTo(11 * S, -3);
    expect(mid(over)).toBeGreaterThan(10 * S);
    expect(mid(over)).toBeLessThan(mid(almost) + 1);
  });

  test('many slots: free slots start the first jobs at once; a full house shares the queue between slots', () => {
    // Four idle slots, three ahead: this job starts now too.
    expect(mid(eta({ slots: 4, ahead: 3 }))).toBeCloseTo(mid(eta({})), -2);
    // Two slots, one busy: the job ahead takes the idle one, this one waits for the busy one (5 s left).
    expect(mid(eta({ slots: 2, running: 1, ahead: 1 }))).toBeCloseTo(15 * S, -3);
    // The order of freeing slots counts, not which slot a running job holds.
    expect(mid(eta({ slots: 3, running: 2, runningElapsedMs: [8 * S], ahead: 2 }))).toBeCloseTo(5 * S + 10 * S, -3);
    // Four busy slots (unknown age), eight ahead: two rounds after the first slot frees up.
    const busy = eta({ slots: 4, running: 4, ahead: 8 })!;
    expect(mid(busy)).toBeCloseTo(5 * S + 2 * 10 * S + 10 * S, -3);
    // More slots never make it later; more jobs ahead never make it sooner.
    let prev = Infinity;
    for (const slots of [1, 2, 3, 4, 8, 16]) {
      const m = mid(eta({ slots, running: Math.min(slots, 2), ahead: 20 }));
      expect(m).toBeLessThanOrEqual(prev);
      prev = m;
    }
    prev = 0;
    for (const ahead of [0, 1, 2, 5, 10, 50]) {
      const m = mid(eta({ slots: 3, running: 3, ahead }));
      expect(m).toBeGreaterThanOrEqual(prev);
      prev = m;
    }
  });

  test('more jobs running than reported slots (reports lag a new worker): the running jobs are the slots', () => {
    expect(eta({ slots: 1, running: 3, ahead: 3 })).toEqual(eta({ slots: 3, running: 3, ahead: 3 }));
  });

  test('a long queue: the estimate scales with it, and the range widens with how little is known about the mean', () => {
    const varied = Array.from({ length: 30 }, (_, i) => ({ ms: (8 + (i % 5)) * S, count: 1 }));
    const long = eta({ ahead: 1000, running: 1, samples: varied })!;
    const meanMs = varied.reduce((s, x) => s + x.ms, 0) / varied.length;
    expect(long.lowMs).toBeLessThan(1000 * meanMs);
    expect(long.highMs).toBeGreaterThan(1001 * meanMs);
    // Honest but not useless: within ±15 % of the middle.
    expect((long.highMs - long.lowMs) / mid(long)).toBeLessThan(0.3);
    const fewer = eta({ ahead: 1000, running: 1, samples: varied.slice(0, 5) })!;
    expect(fewer.highMs - fewer.lowMs).toBeGreaterThan(long.highMs - long.lowMs);
    // Spread from one slot's line of jobs grows like √n, the error of the mean like n: relative width stays bounded.
    const short = eta({ ahead: 10, running: 1, samples: varied })!;
    expect((short.highMs - short.lowMs) / mid(short)).toBeLessThan(0.5);
  });

  test('a single sample still gives a range, wider than many identical ones would', () => {
    const one = eta({ samples: same(1, 10 * S), ahead: 3 })!;
    const many = eta({ samples: same(20, 10 * S), ahead: 3 })!;
    expect(one.highMs - one.lowMs).toBeGreaterThan(many.highMs - many.lowMs);
    expect(one.lowMs).toBeLessThan(40 * S);
    expect(one.highMs).toBeGreaterThan(40 * S);
  });
});

describe('slots and samples from worker reports', () => {
  const now = 1_000_000;
  const report = (o: Partial<SlotReport>): SlotReport => ({
    worker: 'w1',
    backend: 'a1111',
    healthy: true,
    circuit: 'closed',
    at: now - 1000,
    concurrency: 2,
    ...o,
  });

  test('each live worker counts its concurrency once; stale, broken or older workers as such', () => {
    expect(liveSlots([], now, 60_000)).toBe(0);
    expect(
      liveSlots(
        [
          report({}),
          report({ backend: 'replicate' }), // same worker, second backend: still 2 slots
          report({ worker: 'w2', concurrency: 3 }),
          report({ worker: 'w3', at: now - 120_000 }), // gone quiet
          report({ worker: 'w4', healthy: false }), // nothing usable
          report({ worker: 'w5', circuit: 'open' }),
          report({ worker: 'w6', concurrency: undefined }), // before the field existed: one at a time
        ],
        now,
        60_000,
      ),
    ).toBe(2 + 3 + 1);
  });

  test('durations of the backends in use; all of them when none matches', () => {
    const samples = [...same(3, 30 * S, 1, 'replicate'), ...same(3, 10 * S, 1, 'a1111'), { ms: 5 * S, count: 1 }];
    const boxDown = [report({ healthy: false }), report({ backend: 'replicate' })];
    expect(samplesInUse(samples, boxDown, now, 60_000).map((s) => s.backend)).toEqual(['replicate', 'replicate', 'replicate']);
    expect(samplesInUse(samples, [report({ backend: 'huggingface' })], now, 60_000)).toHaveLength(samples.length);
  });

  test('the window keeps the newest jobs; a seed from the database only fills room behind them', () => {
    const w = new DurationWindow(3);
    w.add({ ms: 1, count: 1 });
    w.seed([
      { ms: 10, count: 1 },
      { ms: 11, count: 1 },
      { ms: 12, count: 1 },
    ]);
    expect(w.samples().map((s) => s.ms)).toEqual([1, 10, 11]);
    w.add({ ms: 2, count: 1 });
    expect(w.samples().map((s) => s.ms)).toEqual([2, 1, 10]);
  });
});

describe('queued message', () => {
  test('the range is rounded to a unit that suits it', () => {
    expect(etaRange({ lowMs: 12 * S, highMs: 38 * S })).toBe('in about 10–40 s');
    expect(etaRange({ lowMs: 3 * S, highMs: 8 * S })).toBe('in under 10 s');
    expect(etaRange({ lowMs: 107 * S, highMs: 123 * S })).toBe('in about 90–150 s');
    expect(etaRange({ lowMs: 20 * S, highMs: 100 * S })).toBe('in under 120 s');
    expect(etaRange({ lowMs: 70 * S, highMs: 290 * S })).toBe('in about 1–5 min');
    expect(etaRange({ lowMs: 22 * 60 * S, highMs: 34 * 60 * S })).toBe('in about 20–35 min');
    expect(etaRange({ lowMs: 3.2 * 3600 * S, highMs: 4.5 * 3600 * S })).toBe('in about 3–5 h');
    expect(etaRange({ lowMs: 240 * S, highMs: 240 * S })).toBe('in about 4 min');
  });

  test('position and ETA, or says why there is no estimate', () => {
    expect(text.queued(1, 'no-runs')).toBe('Queued: you are next. No time estimate yet: no job has finished recently.');
    expect(text.queued(4, 'no-worker')).toBe('Queued: position 4. No time estimate: no worker is available to run jobs right now.');
    expect(text.queued(3, { lowMs: 70 * S, highMs: 290 * S })).toBe('Queued: position 3. Ready in about 1–5 min.');
  });
});
