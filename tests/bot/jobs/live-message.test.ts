import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { LiveMessage } from '../../../bot/jobs/live-message.js';
import { type MessageBody, queuedBody } from '../../../bot/jobs/render.js';
import { discordError, REF, REQUEST, recordingEdits, silent } from './doubles.js';

const INTERVAL = 1500;
const TOKEN_LIFE = 60_000;

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-11-23T12:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

function live(edits = recordingEdits(), over: { since?: number; replyMessageId?: string } = {}) {
  const m = new LiveMessage({
    jobId: 'j1',
    channelId: 'c1',
    ref: REF,
    since: over.since ?? Date.now(),
    replyMessageId: over.replyMessageId ?? null,
    edits,
    log: silent,
    now: () => Date.now(),
    editIntervalMs: INTERVAL,
    tokenLifetimeMs: TOKEN_LIFE,
  });
  return { m, edits };
}

const place = (n: number): MessageBody => queuedBody('j1', REQUEST, [n, 'no-runs']);
const progress = (step: number) => async () => ({ body: { ...place(0), content: `step ${step}` }, files: [] });

describe('one reply, edited while its job waits and runs', () => {
  test('edits are at least the edit interval apart, and only the newest content waiting for a slot is sent', async () => {
    const { m, edits } = live();
    await m.showFirst(place(3));
    m.offerProgress(progress(1));
    m.offerProgress(progress(2));
    m.offerProgress(progress(3));
    await vi.advanceTimersByTimeAsync(INTERVAL - 1);
    expect(edits.sent.map((e) => e.content)).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(edits.sent.map((e) => e.content).slice(1)).toEqual(['step 3']);
    expect(edits.sent[1]!.at - edits.sent[0]!.at).toBeGreaterThanOrEqual(INTERVAL);
  });

  test('progress wins over a queue position waiting for the same slot', async () => {
    const { m, edits } = live();
    await m.showFirst(place(3));
    m.waitInQueue();
    m.offerPlace(place(2));
    m.offerProgress(progress(1));
    await vi.advanceTimersByTimeAsync(INTERVAL);
    expect(edits.sent.map((e) => e.content).slice(1)).toEqual(['step 1']);
  });

  test('a position not yet sent when the job starts running is dropped', async () => {
    const { m, edits } = live();
    await m.showFirst(place(3));
    m.waitInQueue();
    m.offerPlace(place(2));
    m.running();
    await vi.advanceTimersByTimeAsync(INTERVAL * 2);
    expect(edits.sent).toHaveLength(1);
  });

  test('work in order runs after the edit under way, and once closed nothing more is sent: a late progress edit never overwrites the result', async () => {
    const { m, edits } = live();
    // Discord is slow: the next progress edit comes due while the result waits behind the first.
    edits.delayMs = 2 * INTERVAL;
    m.offerProgress(progress(1));
    await vi.advanceTimersByTimeAsync(1);
    const order: string[] = [];
    const posted = m.inOrder(async () => {
      order.push(`result after ${edits.sent.length} edit(s)`);
      m.close();
    });
    m.offerProgress(progress(2));
    await vi.advanceTimersByTimeAsync(INTERVAL * 4);
    await posted;
    await m.idle();
    expect(order).toEqual(['result after 1 edit(s)']);
    expect(edits.sent.map((e) => e.content)).toEqual(['step 1']);
  });

  test("past the token's life the reply is edited with the bot's token when its id is known", async () => {
    const { m, edits } = live(recordingEdits(), { since: Date.now() - TOKEN_LIFE, replyMessageId: 'reply-9' });
    expect(m.reachable()).toBe(true);
    m.offerProgress(progress(1));
    await vi.advanceTimersByTimeAsync(0);
    expect(edits.sent.map((e) => e.route)).toEqual(['channel']);
  });

  test("past the token's life with no reply id there is nothing to edit: position edits stop", async () => {
    const { m, edits } = live(recordingEdits(), { since: Date.now() - TOKEN_LIFE });
    expect(m.reachable()).toBe(false);
    m.waitInQueue();
    m.offerPlace(place(2));
    await vi.advanceTimersByTimeAsync(0);
    expect(edits.sent).toEqual([]);
    expect(m.quiet).toBe(true);
  });

  test('a reply deleted meanwhile stops position edits; any other failure sends the place again next time', async () => {
    const gone = live();
    gone.edits.fail.push(discordError(10008));
    gone.m.waitInQueue();
    gone.m.offerPlace(place(2));
    await vi.advanceTimersByTimeAsync(0);
    expect(gone.m.quiet).toBe(true);

    const flaky = live();
    flaky.edits.fail.push(discordError(0, 500));
    flaky.m.waitInQueue();
    flaky.m.offerPlace(place(2));
    await vi.advanceTimersByTimeAsync(0);
    expect(flaky.m.quiet).toBe(false);
    expect(flaky.m.shownPlace).toBeUndefined();
  });

  test('after halt() no new edit is scheduled, while the edit under way finishes', async () => {
    const { m, edits } = live();
    edits.delayMs = 100;
    m.offerProgress(progress(1));
    await vi.advanceTimersByTimeAsync(1);
    m.halt();
    m.offerProgress(progress(2));
    await vi.advanceTimersByTimeAsync(INTERVAL * 3);
    await m.idle();
    expect(edits.sent.map((e) => e.content)).toEqual(['step 1']);
  });
});

describe("the job's place as the interaction's first answer", () => {
  test('sent by the answer, not as an edit; the reply id it returns is kept for edits after the token, and the next edit waits its turn', async () => {
    const { m, edits } = live();
    const answered: string[] = [];
    await m.answerFirst(place(2), async (body) => {
      answered.push(body.content);
      return 'reply-7';
    });
    expect(answered).toHaveLength(1);
    expect(edits.sent).toEqual([]);
    expect(m.replyMessageId).toBe('reply-7');
    m.offerProgress(progress(1));
    await vi.advanceTimersByTimeAsync(INTERVAL - 1);
    expect(edits.sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(edits.sent.map((e) => e.content)).toEqual(['step 1']);
  });

  test('deferred meanwhile: the place is the first edit, after the deferral and never after the result', async () => {
    // The result is queued on the reply before the late place arrives: the place must not overwrite it.
    const { m, edits } = live();
    let deferred!: () => void;
    m.after(new Promise<void>((r) => (deferred = r)));
    const result = m.inOrder(async () => {
      m.close();
      await edits.editOriginal(REF, { ...place(0), content: 'result' }, []);
    });
    const first = m.answerFirst(place(2), async () => 'deferred');
    deferred();
    await Promise.all([result, first, m.idle()]);
    expect(edits.sent.map((e) => e.content)).toEqual(['result']);

    // Deferred, nothing else queued: the place is edited in once the deferral is in.
    const other = live();
    let late!: () => void;
    other.m.after(new Promise<void>((r) => (late = r)));
    const shown = other.m.answerFirst(place(4), async () => 'deferred');
    await Promise.resolve();
    expect(other.edits.sent).toEqual([]);
    late();
    await shown;
    await other.m.idle();
    expect(other.edits.sent.map((e) => e.content)).toEqual([place(4).content]);
  });
});
