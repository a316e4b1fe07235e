import { describe, expect, test } from 'vitest';
import { boxWait, offeredPresets, previewRoute, type RouteReport, shouldOverflow } from '../../core/overflow.js';

const runs = (ms: number, n = 10) => Array.from({ length: n }, () => ({ ms, count: 1 }));

describe('the expected wait for a GPU box', () => {
  test('a free box is no wait; each job ahead on one box adds a run', () => {
    expect(boxWait({ ahead: 0, usable: 1, busyElapsedMs: [], samples: runs(25_000) })!.meanMs).toBe(0);
    // One running for 5 s of its 25, three ahead: 20 + 3 × 25 s.
    expect(boxWait({ ahead: 3, usable: 1, busyElapsedMs: [5000], samples: runs(25_000) })!.meanMs).toBeCloseTo(95_000, -2);
  });

  test('two boxes share the line ahead', () => {
    const one = boxWait({ ahead: 4, usable: 1, busyElapsedMs: [0], samples: runs(10_000) })!.meanMs;
    const two = boxWait({ ahead: 4, usable: 2, busyElapsedMs: [0, 0], samples: runs(10_000) })!.meanMs;
    expect(two).toBeLessThan(one / 1.5);
  });

  test('nothing honest to say without a run time or a usable box', () => {
    expect(boxWait({ ahead: 2, usable: 1, busyElapsedMs: [0], samples: [] })).toBeNull();
    expect(boxWait({ ahead: 2, usable: 0, busyElapsedMs: [], samples: runs(1000) })).toBeNull();
  });
});

describe('the overflow rule', () => {
  const base = { overflowAfterS: 60, cloudAvailable: true, budgetAllows: true };
  test('five members behind a box that takes 25 s: the first runs, the next two wait, the fourth and fifth go to the cloud', () => {
    // Jobs 2-5 find the box just taken; the fifth finds the fourth gone to the cloud already.
    const lines = [0, 1, 2, 2].map((ahead) => boxWait({ ahead, usable: 1, busyElapsedMs: [0], samples: runs(25_000) }));
    expect(lines.map((w) => Math.round(w!.meanMs / 1000))).toEqual([25, 50, 75, 75]);
    const go = lines.map((w) => shouldOverflow({ ...base, expectedWaitMs: w?.meanMs ?? null }));
    expect(go).toEqual([false, false, true, true]);
  });

  test('never without budget, without a cloud backend, with OVERFLOW_AFTER_S=0, or without an estimate', () => {
    expect(shouldOverflow({ ...base, expectedWaitMs: 600_000, budgetAllows: false })).toBe(false);
    expect(shouldOverflow({ ...base, expectedWaitMs: 600_000, cloudAvailable: false })).toBe(false);
    expect(shouldOverflow({ ...base, expectedWaitMs: 600_000, overflowAfterS: 0 })).toBe(false);
    expect(shouldOverflow({ ...base, expectedWaitMs: null })).toBe(false);
    expect(shouldOverflow({ ...base, expectedWaitMs: 60_000 })).toBe(false);
    expect(shouldOverflow({ ...base, expectedWaitMs: 60_001 })).toBe(true);
  });
});

describe('the route a member is shown before the job runs', () => {
  const now = 1_000_000;
  const report = (over: Partial<RouteReport>): RouteReport => ({
    worker: 'w1',
    backend: 'a1111',
    family: 'a1111',
    healthy: true,
    circuit: 'closed',
    paid: false,
    at: now - 1000,
    order: 0,
    presets: { sdxl: 0, fast: 0 },
    overflowAfterS: 60,
    ...over,
  });
  const box = report({});
  const replicate = report({ backend: 'replicate', family: 'replicate', paid: true, order: 1, presets: { sdxl: 0.004875 } });
  const hf = report({ backend: 'huggingface', family: 'huggingface', paid: true, order: 2, presets: { sdxl: 0.01, turbo: 0.01 } });
  const o = { preset: 'sdxl', count: 2, paidAllowed: true, now, staleMs: 60_000 };

  test('a box and a paid provider: the first paid one in BACKENDS order, its price for the images asked, on overflow', () => {
    expect(previewRoute([hf, box, replicate], o)).toEqual({
      box: true,
      paid: { backend: 'replicate', usd: 0.00975, when: 'overflow', overflowAfterS: 60 },
    });
  });

  test('no budget: no paid provider is named', () => {
    expect(previewRoute([box, replicate], { ...o, paidAllowed: false })).toEqual({ box: true });
  });

  test('only a provider runs the preset: it always goes there', () => {
    expect(previewRoute([box, replicate, hf], { ...o, preset: 'turbo' }).paid).toMatchObject({ backend: 'huggingface', when: 'always' });
  });

  test('OVERFLOW_AFTER_S=0: the provider only when the box fails; stale and open-circuited reports count for nothing', () => {
    expect(
      previewRoute(
        [
          { ...box, overflowAfterS: 0 },
          { ...replicate, overflowAfterS: 0 },
        ],
        o,
      ).paid?.when,
    ).toBe('failover');
    expect(previewRoute([{ ...box, at: now - 120_000 }, replicate], o).paid?.when).toBe('always');
    expect(previewRoute([box, { ...replicate, circuit: 'open' }], o)).toEqual({ box: true });
  });

  test('presets offered: those some fresh, healthy backend runs; none known while a worker reports no presets', () => {
    expect([...(offeredPresets([box, replicate, hf], now, 60_000) ?? [])].sort()).toEqual(['fast', 'sdxl', 'turbo']);
    expect([...(offeredPresets([box, { ...hf, healthy: false }], now, 60_000) ?? [])].sort()).toEqual(['fast', 'sdxl']);
    expect(offeredPresets([{ ...box, presets: undefined }], now, 60_000)).toBeNull();
    expect(offeredPresets([], now, 60_000)).toBeNull();
  });
});
