/** Every string a member or moderator reads, in one place. Values echoed from users are escaped by the caller. */
import { backendLabel } from './backend-families.js';
import type { Eta, NoEta } from './eta.js';
import type { FailureCode } from './failures.js';
import { msUntilUtcMidnight } from './quota.js';

function hoursMinutes(ms: number): string {
  const m = Math.ceil(ms / 60_000);
  const h = Math.floor(m / 60);
  return h > 0 ? `${h} h ${m % 60} min` : `${m} min`;
}

/**
 * An ETA range in words, rounded to a unit that suits its size (10 s, 30 s, 1 min, 5 min, 1 h): the
 * figure stays put while the queue barely moves, so the message is not edited for noise.
 */
export function etaRange(eta: Eta): string {
  const hi = Math.max(eta.highMs, eta.lowMs) / 1000;
  const [unit, name] =
    hi <= 60 ? [10, 's'] : hi <= 180 ? [30, 's'] : hi <= 15 * 60 ? [60, 'min'] : hi <= 2 * 3600 ? [300, 'min'] : [3600, 'h'];
  const per = name === 's' ? 1 : name === 'min' ? 60 : 3600;
  const low = (Math.floor(eta.lowMs / 1000 / unit) * unit) / per;
  const high = Math.max((Math.ceil(hi / unit) * unit) / per, unit / per);
  if (low <= 0) return `in under ${high} ${name}`;
  if (low >= high) return `in about ${high} ${name}`;
  return `in about ${low}–${high} ${name}`;
}

/** An estimated price: a tenth of a cent below a cent, cents above. */
function usd(amount: number): string {
  return amount < 0.01 ? `$${amount.toFixed(3)}` : `$${amount.toFixed(2)}`;
}

/** A model as members read it: `sd_xl_base_1.0 [31e35c80fc]`, `stability-ai/sdxl:8beff3369e81…`. */
export function modelText(m: { name: string; version?: string | undefined }): string {
  if (!m.version) return m.name;
  return /^[0-9a-f]{64}$/.test(m.version) ? `${m.name}:${m.version.slice(0, 12)}…` : `${m.name} [${m.version}]`;
}

/**
 * The steps and guidance a job ran, as members read them: the result's (the backend's own), else
 * (a result of an older worker) the request's; a member's steps a preset's model capped say so.
 */
export function ranText(
  request: { steps: number; guidance: number; memberSteps?: number | undefined },
  result?: { steps?: number | undefined; guidance?: number | null | undefined } | null,
): { steps: string; guidance: string } {
  const steps = result?.steps ?? request.steps;
  const asked = request.memberSteps;
  const guidance = result?.guidance === undefined ? request.guidance : result.guidance;
  return {
    steps: asked !== undefined && steps < asked ? `${steps} (asked ${asked}; the preset's most)` : String(steps),
    guidance: guidance === null ? '— (the model takes none)' : String(guidance),
  };
}

const priceTag = (amount: number | undefined) => (amount !== undefined && amount > 0 ? ` (about ${usd(amount)})` : '');

export const text = {
  genericError: (ref: string) => `Something went wrong on our side. Please try again later. (reference \`${ref}\`)`,
  notInGuild: 'This command works in servers only.',
  notModerator: 'Only moderators (Manage Server permission or a moderator role) can use `/admin`. Nothing was changed.',
  queueUnavailable:
    'The image queue is unavailable right now, so nothing was queued and your quota was not used. Please try again in a minute.',
  databaseUnavailable: 'The bot cannot reach its database right now, so nothing was queued. Please try again in a minute.',
  botBusy: 'The bot is very busy right now, so nothing was queued and your quota was not used. Please try again in a few seconds.',
  quotaExhausted: (used: number, limit: number, asked: number, now: Date) =>
    `You have used ${used} of your ${limit} images today, so ${asked} more would go over the limit. ` +
    `Daily limits reset at 00:00 UTC (in ${hoursMinutes(msUntilUtcMidnight(now))}).`,
  promptNsfw: "This server's NSFW policy does not allow that prompt here. Nothing was queued and your quota was not used.",
  promptBanned: "The prompt contains a word this server's moderators have banned. Nothing was queued and your quota was not used.",
  inputTooSlow: 'Reading the image took too long. Try again in a moment.',
  userBlocked: 'A moderator has turned off image generation for you in this server.',
  tooManyQueued: (inFlight: number, max: number) =>
    `You already have ${inFlight} jobs queued or running (the limit is ${max}). Wait for one to finish, then try again.`,
  /** `position` 1 is the next job to start; without a range, `eta` says why there is none. */
  queued: (position: number, eta: Eta | NoEta) =>
    `${position <= 1 ? 'Queued: you are next.' : `Queued: position ${position}.`} ` +
    (eta === 'no-worker'
      ? 'No time estimate: no worker is available to run jobs right now.'
      : eta === 'no-runs'
        ? 'No time estimate yet: no job has finished recently.'
        : `Ready ${etaRange(eta)}.`),
  running: (backend: string, step: number, total: number, fraction: number) =>
    total > 0 ? `Generating on ${backend}: step ${step}/${total} (${Math.round(fraction * 100)} %)` : `Generating on ${backend}…`,
  starting: 'Starting…',
  /** Queued, but its place could not be read just now (the next refresh shows it). */
  queuedUnplaced: 'Queued. Its place in the queue shows here in a moment.',
  presetUnavailable: (preset: string, available: readonly string[]) =>
    `No image backend of this server can run the preset \`${preset}\` right now (a few-step preset needs its own checkpoint on the GPU box, for one). ` +
    (available.length > 0 ? `Try ${available.map((p) => `\`${p}\``).join(', ')}.` : 'Nothing was queued.'),
  /** A job a worker holds while it waits its turn on a GPU box. */
  waitingForBox: (ahead: number, start: Eta | null) =>
    `Waiting for the GPU box: ${ahead === 0 ? 'you are next' : `${ahead} job${ahead === 1 ? '' : 's'} ahead`}.` +
    (start ? ` It should start ${etaRange(start)}.` : ''),
  /** Before a job runs: the paid provider it may go to, and about what that would cost. */
  route: (r: { backend: string; usd: number; when: 'always' | 'overflow' | 'failover'; overflowAfterS: number }) =>
    r.when === 'always'
      ? `Runs on ${backendLabel(r.backend)}${priceTag(r.usd)}.`
      : r.when === 'overflow'
        ? `If the GPU box is busy for more than ${r.overflowAfterS} s, it runs on ${backendLabel(r.backend)} instead${priceTag(r.usd)}.`
        : `If the GPU box fails, it runs on ${backendLabel(r.backend)} instead${priceTag(r.usd)}.`,
  /** On a result: why it ran where it ran. */
  routedResult: (reason: 'overflow' | 'failover', backend: string) =>
    `${reason === 'overflow' ? 'GPU box busy' : 'GPU box unavailable'}: sent to ${backendLabel(backend)}`,
  /** Where the job went when it did not run on the box it was meant for. */
  routed: (reason: 'overflow' | 'failover', backend: string, amount?: number) =>
    `${reason === 'overflow' ? 'GPU box busy' : 'GPU box unavailable'}: sent to ${backendLabel(backend)}${amount !== undefined && amount > 0 ? `, about ${usd(amount)}` : ''}.`,
  /** One line of `/quota`'s job list; `position` when the job is waiting in the queue. */
  quotaJob: (status: string, position: number | null, prompt: string) =>
    `• ${position !== null ? `queued, position ${position}` : status === 'queued' ? 'starting' : status}: ${prompt}`,
  /** The old reply, once the token limit has passed: what became of the job, and where its message is. */
  resultBelow: (outcome: 'finished' | 'failed' | 'cancelled', url: string) => {
    const [head, what] =
      outcome === 'finished'
        ? ['Finished.', 'the result is']
        : outcome === 'cancelled'
          ? ['Cancelled.', 'the details are']
          : ['No image could be made.', 'the reason is'];
    return `${head} This took longer than Discord lets a reply stay editable, so ${what} posted below: ${url}`;
  },
  failed: (reason: string) => `The image could not be made: ${reason} Your quota was refunded.`,
  /** Why a worker's result was refused by the output limits (the reason of a failed job). */
  resultRefused: (why: string) => `the images the worker returned were refused (${why}).`,
  cancelled: 'Cancelled. Your quota was refunded.',
  quotaSummary: (o: { usedToday: number; limit: number; usedThisMonth: number; inFlight: number; now: Date }) =>
    [
      `**Today:** ${o.usedToday} of ${o.limit} images used, ${Math.max(o.limit - o.usedToday, 0)} left.`,
      `Daily limits reset at 00:00 UTC (in ${hoursMinutes(msUntilUtcMidnight(o.now))}).`,
      `**This month:** ${o.usedThisMonth} images.`,
      `**Queued or running now:** ${o.inFlight}.`,
    ].join('\n'),
} as const;

/** Why a job made no image, phrased for members (one per code of core/failures.ts). */
export const failureText = {
  all_backends_failed: 'every image backend is down or busy right now. Please try again later.',
  rejected: 'the image backend refused the request.',
  unsafe: 'the image backend flagged the result as unsafe.',
  cancelled: 'the job was cancelled.',
  invalid_payload: 'the job was malformed.',
  budget_spent: "this server's monthly budget for paid providers is spent and no free backend is available.",
  unsupported: 'no configured backend can do this kind of job.',
  expired: 'the result expired before it could be posted.',
  queue_unavailable: 'the image queue was unavailable.',
  abandoned: 'the job could not be finished in time (the bot was offline for a long while).',
  undeliverable: 'Discord refused every attempt to post the result in this channel.',
  input_rejected: 'the input image could not be used.',
  handed_back: "this server's own GPU box could not run the job.",
} as const satisfies Record<FailureCode, string>;

/** Replies and log-channel notices of `/admin`. Ids are rendered as mentions only where mentions are disabled. */
export const adminText = {
  gpuPrice: (before: number | null, after: number) =>
    `Price of an hour on this server's own GPU boxes: ${before === null ? 'not set' : `$${before}`} → **$${after}** (jobs there are booked at it, never against the paid-provider budget).`,
  quotaDefault: (before: number, after: number) => `Default daily limit: ${before} → **${after}** images per member.`,
  quotaUser: (userId: string, before: number | null, after: number) =>
    after === 0
      ? `<@${userId}> is now **blocked** from generating images (was ${before ?? 'the default'}).`
      : `Daily limit for <@${userId}>: ${before ?? 'default'} → **${after}** images.`,
  quotaUserClear: (userId: string, before: number | null) =>
    before === null
      ? `<@${userId}> had no override; nothing changed.`
      : `Override for <@${userId}> removed (was ${before}); the server default applies.`,
  nsfw: (before: string, after: string) =>
    `NSFW mode: ${before} → **${after}**. ` +
    (after === 'strict' ? 'NSFW prompts and images are blocked everywhere.' : 'NSFW is allowed only in age-restricted channels.'),
  /** `added`: words that were not banned before; `already`: words given that were. */
  bannedAdded: (added: number, already: number, total: number) =>
    added === 0
      ? `Nothing changed: ${already === 1 ? 'that word is' : `all ${already} words are`} already banned. The list has ${total}.`
      : `Added ${added} banned word${added === 1 ? '' : 's'}${already > 0 ? ` (${already} ${already === 1 ? 'was' : 'were'} already on the list)` : ''}; the list now has ${total}.`,
  /** `removed`: words that were banned; `absent`: words given that were not. */
  bannedRemoved: (removed: number, absent: number, total: number) =>
    removed === 0
      ? `Nothing changed: ${absent === 1 ? 'that word was not' : `none of those ${absent} words was`} on the list. The list has ${total}.`
      : `Removed ${removed} banned word${removed === 1 ? '' : 's'}${absent > 0 ? ` (${absent} ${absent === 1 ? 'was' : 'were'} not on the list)` : ''}; the list now has ${total}.`,
  bannedList: (words: string[]) =>
    words.length === 0 ? 'No banned words.' : `Banned words (${words.length}): ${words.map((w) => `\`${w}\``).join(', ')}`,
  bannedNeedWords: 'Give the words to add or remove in `words:` (comma-separated).',
  budget: (before: number, after: number) =>
    `Monthly budget for paid providers: $${before.toFixed(2)} → **$${after.toFixed(2)}**.` +
    (after === 0 ? ' Only the local GPU will be used.' : ''),
  logChannel: (channelId: string) => `Notices will be posted in <#${channelId}>.`,
  notice: (actorId: string, what: string) => `🛠️ <@${actorId}> changed a setting: ${what}`,
  unsafeHeld: (userId: string, channelId: string, jobId: string) =>
    `🚫 An image for <@${userId}> in <#${channelId}> was flagged as NSFW and not posted (job ${jobId}).`,
  /** `held`: results refused the same way since the previous notice, sent at `since` (ms). */
  undeliverable: (
    userId: string,
    channelId: string,
    jobId: string,
    reason: string,
    refunded: number,
    held: { count: number; since: number } | null,
  ) =>
    `📭 A result for <@${userId}> could not be posted in <#${channelId}>: Discord kept answering \`${reason}\`, so the bot gave up` +
    (refunded > 0 ? ` and refunded the member's ${refunded} image${refunded === 1 ? '' : 's'}` : '') +
    ` (job ${jobId}).` +
    (held && held.count > 0
      ? ` ${held.count} more result${held.count === 1 ? '' : 's'} in that channel failed the same way since the previous notice <t:${Math.floor(held.since / 1000)}:R>.`
      : '') +
    ' Check that the bot may View Channel, Send Messages, Attach Files and Embed Links there (and Send Messages in Threads for threads).',
  budgetAlert: (pct: number, spent: number, budget: number) =>
    pct >= 100
      ? `💸 This server has spent $${spent.toFixed(2)} of its $${budget.toFixed(2)} monthly budget for paid providers. Paid providers are now skipped until next month or until a moderator raises the budget.`
      : `💸 This server has spent $${spent.toFixed(2)} (${pct} %) of its $${budget.toFixed(2)} monthly budget for paid providers.`,
} as const;

/** Replies of `/admin gpu`: linking a server's own GPU box. */
export const gpuText = {
  disabled:
    "Linking your own GPU box is not enabled on this bot (its operator has not set `LINK_REDIS_URL`). If you run the bot yourself, see the README, 'Link your GPU box to a server'.",
  /** The one reply that holds a join token: ephemeral, never a notice, never logged. */
  join: (j: { linkId: string; token: string; expiresAt: Date; redisUrl: string; queuePrefix?: string }, rotated: boolean) =>
    [
      rotated
        ? `New join token for link \`${j.linkId}\`: the box's old access has ended. Restart its worker with this token.`
        : `Link \`${j.linkId}\` created. Start a worker on your GPU box with this one-time token.`,
      `It works once, until <t:${Math.floor(j.expiresAt.getTime() / 1000)}:f>. Do not share it: whoever uses it first runs this server's jobs.`,
      '',
      "1. On the GPU box, get the bot's code (`git clone`) and, in its folder, put in `.env`:",
      '```',
      `REDIS_URL=${j.redisUrl}`,
      ...(j.queuePrefix ? [`QUEUE_PREFIX=${j.queuePrefix}`] : []),
      `WORKER_JOIN_TOKEN=${j.token}`,
      'A1111_URL=http://host.docker.internal:7860',
      '```',
      '(ComfyUI: `COMFYUI_URL=http://host.docker.internal:8188` instead of `A1111_URL`.)',
      '2. Start it: `docker compose -f docker-compose.worker.yml up -d --build`',
      '   or, without Docker (Node 24, and `A1111_URL=http://127.0.0.1:7860`): `npm ci && npm run worker`',
      '3. Check with `/admin gpu status`: the box shows **online** within a few seconds.',
    ].join('\n'),
  notice: (linkId: string, what: 'link' | 'unlink' | 'rotate') =>
    what === 'link'
      ? `linked a GPU box (link \`${linkId}\`, waiting for the box to join).`
      : what === 'unlink'
        ? `unlinked GPU box \`${linkId}\`; its access ended at once.`
        : `rotated the token of GPU box \`${linkId}\`; its old access ended at once.`,
  /** Log-channel notices of the box's own steps (no moderator acted, so not "changed a setting"). */
  joined: (linkId: string) => `🖥️ GPU box \`${linkId}\` joined: it runs this server's jobs from now on.`,
  tokenExpired: (linkId: string) =>
    `⌛ The join token of GPU box \`${linkId}\` expired unused. \`/admin gpu rotate link:${linkId}\` issues a new one.`,
  unknown: (linkId: string) => `This server has no active GPU link \`${linkId}\`. \`/admin gpu status\` lists them.`,
  unlinked: (linkId: string) => `GPU box \`${linkId}\` unlinked: its worker lost access to this server's jobs at once.`,
  none: 'No GPU box is linked to this server. `/admin gpu link` links one.',
  status: (
    links: readonly {
      id: string;
      createdBy: string;
      state: 'waiting' | 'expired' | 'online' | 'offline';
      tokenExpiresAt: Date;
      busy: boolean;
      boxes: readonly { backend: string; healthy: boolean }[];
      model?: string;
      jobsToday: number;
      lastSeenAt?: number;
      lastError: string | null;
    }[],
  ) =>
    links
      .map((l) => {
        const head =
          l.state === 'online'
            ? `🟢 \`${l.id}\` **online**${l.busy ? ', busy' : ', idle'}`
            : l.state === 'offline'
              ? `🔴 \`${l.id}\` **offline**${l.lastSeenAt ? ` (last seen <t:${Math.floor(l.lastSeenAt / 1000)}:R>)` : ''}`
              : l.state === 'waiting'
                ? `⏳ \`${l.id}\` **waiting for the box to join** (token valid until <t:${Math.floor(l.tokenExpiresAt.getTime() / 1000)}:f>)`
                : `⌛ \`${l.id}\` **token expired unused**: \`/admin gpu rotate link:${l.id}\` issues a new one`;
        const parts = [
          ...(l.boxes.length > 0 ? [l.boxes.map((b) => `${b.backend}${b.healthy ? '' : ' (unhealthy)'}`).join(', ')] : []),
          ...(l.model ? [`model ${l.model}`] : []),
          `${l.jobsToday} job${l.jobsToday === 1 ? '' : 's'} today`,
          `linked by <@${l.createdBy}>`,
        ];
        return `${head}\n  ${parts.join(' · ')}${l.lastError ? `\n  last error: ${l.lastError}` : ''}`;
      })
      .join('\n'),
} as const;

/** Replies to result and progress buttons. */
export const buttonText = {
  stale: 'This button is no longer valid. Run the command again.',
  notFound: 'That job no longer exists.',
  forgotten: "This image's prompt and settings were erased from the bot's records, so it cannot be used to make another.",
  /** Info on a job whose data was erased. */
  forgottenInfo: (reason: 'member' | 'retention', at: Date, retentionDays: number) =>
    reason === 'member'
      ? `This job's prompt, settings and message references were forgotten at its requester's request (\`/forget\`, ${at.toISOString().slice(0, 10)}).`
      : `This job's prompt, settings and message references were erased on ${at.toISOString().slice(0, 10)}: the bot keeps them for ${retentionDays} days.`,
  notOwner: 'Only the member who asked for this image, or a moderator, can do that.',
  alreadyFinished: 'This job has already finished.',
  cancelled: 'Cancelled. Your quota was refunded.',
  cancelling: 'Cancelling… your quota will be refunded.',
  deleted: 'Deleted.',
  unavailable: 'That action is not available for this image.',
  cannotUpscale: 'This image is already as large as the bot makes images.',
  sourceGone: 'The image this button belongs to is no longer on the message, so it cannot be used.',
  labels: {
    reroll: 'Reroll',
    edit: 'Edit',
    info: 'Info',
    delete: 'Delete',
    cancel: 'Cancel',
    /** One image: "Vary"; several: "V1" … "V4", matching the numbers on the grid. */
    vary: (index: number, count: number) => (count === 1 ? 'Vary' : `V${index + 1}`),
    upscale: (index: number, count: number) => (count === 1 ? 'Upscale' : `U${index + 1}`),
  },
  editModal: {
    title: 'Edit and run again',
    prompt: 'Prompt',
    negative: 'Negative prompt (optional)',
  },
  /** Over follow-up messages that carry the images the first message had no room for. */
  moreImages: (from: number, to: number, total: number) =>
    from === to ? `Image ${from} of ${total} (full size)` : `Images ${from}–${to} of ${total} (full size)`,
  /** Grid tile captions are numbers only; this is the grid's alt text. */
  gridAlt: (count: number) => `Grid of ${count} images, numbered 1 to ${count}`,
  /** Shown on results of Vary and Upscale. */
  derivedFrom: (kind: 'img2img' | 'upscale', index: number) =>
    kind === 'upscale'
      ? `Upscaled from image ${index + 1} of the earlier result.`
      : `Variation of image ${index + 1} of the earlier result.`,
} as const;

export const inpaintText = {
  needImage: 'Attach the image to edit in `image:`.',
} as const;

/** `/forget` and its confirmation. */
export const privacyText = {
  button: 'Forget my data in this server',
  confirm: (finished: number, underWay: number, retentionDays: number) =>
    [
      "**Forget your data in this server?** This can't be undone.",
      `The bot will erase the prompts, negative prompts, settings, seeds and message references of your ${finished} finished job${finished === 1 ? '' : 's'} here.`,
      "What stays: how many images you made, when, and what they cost, without any prompt (the server's totals and your daily quota need them).",
      'Images already posted stay in their channels: remove them first with their **Delete** button if you want them gone too.',
      underWay > 0
        ? `${underWay} job${underWay === 1 ? ' is' : 's are'} still under way and not included: run \`/forget\` again once ${underWay === 1 ? 'it is' : 'they are'} posted.`
        : null,
      `Without this, the bot erases the same after ${retentionDays} days anyway. To keep your data, just dismiss this message.`,
    ]
      .filter(Boolean)
      .join('\n'),
  nothingToForget: (underWay: number) =>
    underWay > 0
      ? `You have no finished jobs to forget here yet; ${underWay} still under way. Run \`/forget\` again once ${underWay === 1 ? 'it is' : 'they are'} posted.`
      : 'The bot keeps no prompts or settings of yours in this server.',
  done: (forgotten: number, underWay: number) =>
    `Done: the prompts and settings of ${forgotten} job${forgotten === 1 ? '' : 's'} were erased from the bot's records in this server.` +
    (underWay > 0 ? ` ${underWay} still under way ${underWay === 1 ? 'was' : 'were'} not included.` : ''),
} as const;
