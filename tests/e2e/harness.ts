import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { type BotOverrides, type RunningBot, startBot } from '../../bot/main.js';
import { botConfigSchema, loadConfig, workerConfigSchema } from '../../core/config.js';
import { createLogger, type Logger } from '../../core/io/logger.js';
import { processSecrets } from '../../core/io/process.js';
import { type RunningWorker, startWorker, type WorkerOverrides } from '../../worker/main.js';
import { startFakeA1111 } from '../fakes/a1111.js';
import { startFakeDiscord } from '../fakes/discord/server.js';
import type { APIOption, FakeDiscordOptions, FakeInteraction, FakeMessage, FakeUser } from '../fakes/discord/types.js';
import { emptyCwd, sourceEntryArgs } from '../setup/processes.js';

export type FakeDiscord = Awaited<ReturnType<typeof startFakeDiscord>>;
export type FakeA1111 = Awaited<ReturnType<typeof startFakeA1111>>;

export const ALICE: FakeUser = { id: '3333333333333333333', username: 'alice' };
export const BOB: FakeUser = { id: '3333333333333333334', username: 'bob' };
export const GUILD_ID = '2222222222222222222';

export interface SystemOptions {
  db: { url: string };
  redisPrefix: string;
  discord?: FakeDiscordOptions;
  a1111?: Parameters<typeof startFakeA1111>[0];
  /** Extra environment for both processes (e.g. DEFAULT_DAILY_IMAGES). */
  env?: Record<string, string>;
  botOverrides?: BotOverrides;
  workerOverrides?: WorkerOverrides;
  /** Start the worker in-process (default) or not at all (the test starts processes itself). */
  worker?: 'in-process' | 'none';
  bot?: 'in-process' | 'none';
  /** Keep the in-process bot's JSON log lines (debug level) in `botLogs`, as a real process would write them. */
  captureBotLog?: boolean;
}

/** A child process running bot/main.ts or worker/main.ts, with its JSON log lines. */
export interface Proc {
  child: ChildProcess;
  logs: string[];
  exited: Promise<number | null>;
}

/**
 * The whole system against fakes: fake Discord and a fake AUTOMATIC1111 on loopback, the real bot
 * and worker code on the test's own database and Redis prefix.
 */
export class System {
  bot: RunningBot | undefined;
  worker: RunningWorker | undefined;
  readonly procs: Proc[] = [];
  /** The in-process bot's log lines, with `captureBotLog`. */
  readonly botLogs: string[] = [];

  private constructor(
    readonly discord: FakeDiscord,
    readonly a1111: FakeA1111,
    readonly env: Record<string, string>,
    private readonly o: SystemOptions,
  ) {}

  static async start(o: SystemOptions): Promise<System> {
    const discord = await startFakeDiscord(o.discord ?? {});
    const a1111 = await startFakeA1111(o.a1111 ?? {});
    const env: Record<string, string> = {
      DISCORD_TOKEN: 'fake-token',
      DISCORD_APP_ID: '1111111111111111111',
      DISCORD_API_URL: discord.apiUrl,
      DATABASE_URL: o.db.url,
      REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
      QUEUE_PREFIX: o.redisPrefix,
      A1111_URL: a1111.url,
      LOG_LEVEL: 'info',
      JOB_LOCK_MS: '2000',
      STALLED_CHECK_MS: '1000',
      PROGRESS_POLL_MS: '50',
      PROGRESS_TIMEOUT_MS: '3000',
      // The real classifier costs seconds of CPU per worker start; tests that need it turn it on.
      NSFW_CLASSIFIER: 'off',
      // The fake's CDN serves posted images (Vary and Upscale read them back from there).
      DISCORD_ATTACHMENT_ORIGINS: discord.baseUrl,
      ...o.env,
    };
    const sys = new System(discord, a1111, env, o);
    if ((o.worker ?? 'in-process') === 'in-process') await sys.startWorker();
    if ((o.bot ?? 'in-process') === 'in-process') await sys.startBot();
    return sys;
  }

  async startBot(): Promise<RunningBot> {
    const config = loadConfig(botConfigSchema, this.env);
    let log: Logger = createLogger({ level: 'silent' });
    if (this.o.captureBotLog) {
      const lines = this.botLogs;
      const destination = new Writable({
        write(chunk, _enc, cb) {
          lines.push(...String(chunk).split('\n').filter(Boolean));
          cb();
        },
      });
      log = createLogger({ level: 'debug', name: 'bot', destination, secrets: processSecrets(config) });
    }
    this.bot = await startBot(config, log, this.o.botOverrides);
    return this.bot;
  }

  async startWorker(): Promise<RunningWorker> {
    const config = loadConfig(workerConfigSchema, this.env);
    this.worker = await startWorker(config, createLogger({ level: 'silent' }), this.o.workerOverrides);
    return this.worker;
  }

  /**
   * Runs bot/main.ts or worker/main.ts as a real process and waits for its ready line. It runs in
   * `cwd` (default: an empty folder, so no `.env` is read) with the system's environment plus `env`
   * (a variable given as undefined is left out).
   */
  async spawn(which: 'bot' | 'worker', opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<Proc> {
    const env: Record<string, string | undefined> = { ...process.env, ...this.env, ...opts.env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn(process.execPath, sourceEntryArgs(`${which}/main.ts`), {
      cwd: opts.cwd ?? emptyCwd(),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs: string[] = [];
    const exited = once(child, 'exit').then(([code]) => code as number | null);
    const proc: Proc = { child, logs, exited };
    this.procs.push(proc);
    let buf = '';
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        buf += chunk.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          logs.push(line);
          if (line.includes(`"${which} ready"`)) resolve();
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
      void exited.then((code) => reject(new Error(`${which} exited with ${code}: ${logs.slice(-5).join('\n')}`)));
    });
    await ready;
    return proc;
  }

  /** Sends `/imagine` as a member and returns the interaction. */
  imagine(
    opts: { prompt: string; user?: FakeUser; channelId?: string; attachmentSizeLimit?: number } & Partial<
      Record<'negative' | 'aspect' | 'preset', string>
    > &
      Partial<Record<'count' | 'seed' | 'steps' | 'guidance', number>>,
  ): Promise<FakeInteraction> {
    const { user, channelId, attachmentSizeLimit, ...rest } = opts;
    const types: Record<string, number> = { prompt: 3, negative: 3, aspect: 3, preset: 3, count: 4, seed: 4, steps: 4, guidance: 10 };
    const options: APIOption[] = Object.entries(rest)
      .filter(([, v]) => v !== undefined)
      .map(([name, value]) => ({ name, type: types[name]!, value: value as string | number }));
    return this.discord.slashCommand({
      name: 'imagine',
      options,
      user: user ?? ALICE,
      channelId,
      ...(attachmentSizeLimit ? { attachmentSizeLimit } : {}),
    });
  }

  /** Waits until the interaction's reply holds a result (an image) or a final failure text. */
  async finalReply(i: FakeInteraction, timeoutMs = 20_000): Promise<FakeMessage> {
    return this.discord.waitFor(() => {
      const m = i.original();
      if (!m) return undefined;
      if (m.attachments.some((a) => a.filename.startsWith('image-') || a.filename.startsWith('grid.'))) return m;
      if (/refunded|could not|Something went wrong/.test(m.content)) return m;
      return undefined;
    }, timeoutMs);
  }

  /**
   * The bot's answer as the member reads it: the reply itself, or, when a public "thinking…" reply
   * was cleared away (a refusal known only after the deferral), the follow-up that replaced it.
   */
  async answerOf(i: FakeInteraction, timeoutMs = 10_000): Promise<FakeMessage> {
    const said = (m: FakeMessage | undefined) => (m && !m.deleted && (m.content || m.embeds.length > 0) ? m : undefined);
    return this.discord.waitFor(() => {
      const m = i.original();
      return m?.deleted ? i.followUps.map(said).find(Boolean) : said(m);
    }, timeoutMs);
  }

  /**
   * What everyone in the channel can see of the bot's answers there: public messages still standing,
   * or that ever carried words (a "thinking…" placeholder deleted as it was is not one).
   */
  publicTraces(channelId: string): FakeMessage[] {
    return this.discord
      .channelMessages(channelId)
      .filter((m) => (m.flags & 64) === 0 && (!m.deleted || m.content !== '' || m.edits > 0 || m.embeds.length > 0));
  }

  /**
   * Everything the interaction's reply showed, in order: its first answer when that was a message
   * (the job's place), then every edit of it (places, progress, the result: `final`).
   */
  replyHistory(i: FakeInteraction): { at: number; content: string; final: boolean }[] {
    return this.discord.requests
      .filter(
        (r) =>
          (r.method === 'POST' && r.path.endsWith(`/${i.token}/callback`) && r.json?.type === 4) ||
          (r.method === 'PATCH' && r.path.includes(`/${i.token}/messages/@original`)),
      )
      .map((r) => ({
        at: r.at,
        content: String((r.method === 'POST' ? r.json.data : r.json)?.content ?? ''),
        final: r.files.some((f) => f.filename.startsWith('image-')),
      }));
  }

  /** Every message a result was delivered in (the reply, then its follow-ups), once all `images` full images are there. */
  async resultMessages(i: FakeInteraction, images: number, timeoutMs = 20_000): Promise<FakeMessage[]> {
    return this.discord.waitFor(() => {
      const first = i.original();
      const all = first ? [first, ...i.followUps] : [...i.followUps];
      return all.flatMap((m) => m.attachments).filter((a) => a.filename.startsWith('image-')).length === images ? all : undefined;
    }, timeoutMs);
  }

  async stop(): Promise<void> {
    for (const p of this.procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.allSettled(this.procs.map((p) => p.exited));
    await this.bot?.stop().catch(() => undefined);
    await this.worker?.stop().catch(() => undefined);
    await this.a1111.close();
    await this.discord.close();
  }
}

/** The custom id of the button with this label on a message; throws when there is none. */
export function buttonId(m: FakeMessage, label: string): string {
  for (const row of m.components) for (const b of row.components) if (b.label === label) return b.custom_id as string;
  throw new Error(`no ${label} button`);
}
