import { once } from 'node:events';
import {
  ActionRowBuilder,
  ButtonBuilder,
  ButtonStyle,
  Client,
  type ClientOptions,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  type Interaction,
  type TextChannel,
} from 'discord.js';
import { afterEach, expect, test } from 'vitest';
import { DEFAULTS, type FakeDiscord, type FakeDiscordOptions, shardForGuild, startFakeDiscord } from './discord/server.js';

const GENERAL = DEFAULTS.generalChannelId;
const NSFW = DEFAULTS.nsfwChannelId;

let fake: FakeDiscord | undefined;
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.destroy();
  const unhandled = fake?.unhandled.map((r) => `${r.method} ${r.path}`) ?? [];
  await fake?.close();
  fake = undefined;
  expect(unhandled).toEqual([]);
});

/** A PNG header (signature + IHDR) for a w×h image – enough for sniffing and IHDR parsing. */
function png(w: number, h: number): Buffer {
  const ihdr = Buffer.alloc(25);
  ihdr.writeUInt32BE(13, 0);
  ihdr.write('IHDR', 4, 'ascii');
  ihdr.writeUInt32BE(w, 8);
  ihdr.writeUInt32BE(h, 12);
  ihdr.set([8, 6, 0, 0, 0], 16);
  const iend = Buffer.from([0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82]);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ihdr, Buffer.from('pixels'), iend]);
}

async function start(
  opts: FakeDiscordOptions = {},
  clientOpts: Partial<ClientOptions> = {},
): Promise<{ fake: FakeDiscord; client: Client }> {
  fake = await startFakeDiscord(opts);
  const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl }, ...clientOpts });
  clients.push(client);
  const ready = once(client, Events.ClientReady);
  await client.login(fake.token);
  await ready;
  return { fake, client };
}

function nextInteraction(client: Client): Promise<Interaction> {
  return new Promise((resolve) => client.once(Events.InteractionCreate, resolve));
}

async function apiError(p: Promise<unknown>): Promise<DiscordAPIError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DiscordAPIError);
  return err as DiscordAPIError;
}

test('login reaches clientReady with the guild, its channels and nsfw flags', async () => {
  const { fake, client } = await start();
  const guild = client.guilds.cache.get(DEFAULTS.guildId);
  expect(guild?.name).toBe('Test Guild');
  expect((guild?.channels.cache.get(GENERAL) as TextChannel).nsfw).toBe(false);
  expect((guild?.channels.cache.get(NSFW) as TextChannel).nsfw).toBe(true);
  expect(guild?.roles.everyone.id).toBe(DEFAULTS.guildId);
  expect(client.user?.id).toBe(fake.appId);
  expect(client.application?.id).toBe(fake.appId);
  expect(fake.identifies[0].shard).toEqual([0, 1]);
  expect(fake.gatewayConnections()).toBe(1);
  expect(fake.requests[0]?.path).toBe('/gateway/bot');
  expect(fake.unhandled).toEqual([]);
});

test('a wrong token fails login with TokenInvalid', async () => {
  fake = await startFakeDiscord();
  const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl } });
  clients.push(client);
  await expect(client.login('wrong-token')).rejects.toThrow(/token/i);
  expect(fake.requests[0]?.status).toBe(401);
});

test('slash command → deferReply → editReply with a file: callback 5 and @original with intact bytes', async () => {
  const { fake, client } = await start();
  const got = nextInteraction(client);
  const init = fake.serveFile('in/cat.png', png(4, 4), 'image/png');
  const fi = await fake.slashCommand({
    name: 'imagine',
    options: [
      { name: 'prompt', type: 3, value: 'a cat' },
      { name: 'count', type: 4, value: 2 },
    ],
    attachments: { init: { filename: 'cat.png', url: init, size: 100, content_type: 'image/png', width: 4, height: 4 } },
    channelId: NSFW,
  });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  expect(i.commandName).toBe('imagine');
  expect(i.options.getString('prompt')).toBe('a cat');
  expect(i.options.getInteger('count')).toBe(2);
  expect(i.options.getAttachment('init')?.url).toBe(init);
  expect((i.channel as TextChannel).nsfw).toBe(true);
  expect(i.memberPermissions?.has('ManageGuild')).toBe(false);
  expect(i.user.id).toBe('3333333333333333333');

  await i.deferReply();
  expect(fi.original()?.flags).toBe(128);
  const image = png(3, 2);
  const msg = await i.editReply({ content: 'done', files: [{ attachment: image, name: 'a.png' }] });

  expect(fi.callbacks.map((c) => c.type)).toEqual([5]);
  const orig = fi.original();
  expect(orig?.content).toBe('done');
  expect(orig?.flags).toBe(0);
  expect(orig?.attachments[0]?.data.equals(image)).toBe(true);
  expect(orig?.attachments[0]).toMatchObject({ filename: 'a.png', contentType: 'image/png', width: 3, height: 2, size: image.length });
  expect(msg.attachments.first()?.width).toBe(3);
  const downloaded = Buffer.from(await (await fetch(msg.attachments.first()!.url)).arrayBuffer());
  expect(downloaded.equals(image)).toBe(true);
  expect(fake.cdnRequests).toHaveLength(1);
  expect(fake.requests.find((r) => r.method === 'PATCH')?.files[0]?.name).toBe('files[0]');
  expect(fake.unhandled).toEqual([]);
});

test('a reply after the ack deadline fails with 10062', async () => {
  const { fake, client } = await start({ ackDeadlineMs: 200 });
  const got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await new Promise((r) => setTimeout(r, 300));
  const err = await apiError(i.reply('late'));
  expect(err.code).toBe(10062);
  expect(err.status).toBe(404);
  expect(fi.callbacks).toEqual([]);
});

test('a second callback fails with 40060', async () => {
  const { fake, client } = await start();
  const got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await i.reply({ content: 'hi', withResponse: true }).then((r) => expect(r.resource?.message?.content).toBe('hi'));
  i.replied = false; // bypass discord.js' local guard to reach the API
  expect((await apiError(i.reply('again'))).code).toBe(40060);
  expect(fi.callbacks).toHaveLength(1);
});

test('an expired interaction token makes editReply fail with 50027 (and keeps the bot token)', async () => {
  const { fake, client } = await start({ interactionTokenLifetimeMs: 300 });
  const got = nextInteraction(client);
  await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await i.deferReply();
  await new Promise((r) => setTimeout(r, 400));
  const err = await apiError(i.editReply('too late'));
  expect(err.code).toBe(50027);
  expect(err.status).toBe(401);
  await expect(client.channels.fetch(GENERAL, { force: true })).resolves.toBeTruthy();
});

test('rate limits make discord.js wait and retry; the edit still lands', async () => {
  const { fake, client } = await start();
  const got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await i.deferReply();
  const limited: unknown[] = [];
  client.rest.on('rateLimited', (info) => limited.push(info));
  fake.rateLimitNext({ method: 'PATCH', pathPrefix: '/webhooks/', count: 2, retryAfterS: 0.25 });
  const t0 = Date.now();
  await i.editReply('after the limit');
  expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
  expect(fi.original()?.content).toBe('after the limit');
  const patches = fake.requests.filter((r) => r.method === 'PATCH');
  expect(patches.map((r) => r.status)).toEqual([429, 429, 200]);
  expect(limited.length).toBeGreaterThanOrEqual(1);
});

test('a deleted message answers 10008 to edits and fetches', async () => {
  const { fake, client } = await start();
  const got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await i.reply('soon gone');
  fake.deleteMessage(fi.original()!.id);
  expect((await apiError(i.editReply('edit'))).code).toBe(10008);
  const channel = (await client.channels.fetch(GENERAL)) as TextChannel;
  const sent = await channel.send('hello');
  fake.deleteMessage(sent.id);
  expect((await apiError(channel.messages.fetch({ message: sent.id, force: true }))).code).toBe(10008);
});

test('two shards: each gets its own guilds and the interactions for them', async () => {
  const first = DEFAULTS.guildId;
  const other = ['2222222222222222223', '2333333333333333333', '2444444444444444444', '3333333333333333444'].find(
    (id) => shardForGuild(id, 2) !== shardForGuild(first, 2),
  )!;
  const guilds = [
    { id: first, name: 'One', channels: [{ id: GENERAL, name: 'general' }] },
    { id: other, name: 'Two', channels: [{ id: '4444444444444444445', name: 'general' }] },
  ];
  const { fake, client } = await start({ guilds }, { shards: [0, 1], shardCount: 2 });
  expect(fake.identifies.map((d) => d.shard).sort()).toEqual([
    [0, 2],
    [1, 2],
  ]);
  expect(fake.gatewayConnections()).toBe(2);
  expect(client.guilds.cache.get(first)?.shardId).toBe(shardForGuild(first, 2));
  expect(client.guilds.cache.get(other)?.shardId).toBe(shardForGuild(other, 2));
  for (const guildId of [first, other]) {
    const got = nextInteraction(client);
    await fake.slashCommand({ name: 'imagine', guildId });
    const i = await got;
    expect(i.guildId).toBe(guildId);
    expect(i.guild?.shardId).toBe(shardForGuild(guildId, 2));
  }
});

test('unknown routes land in unhandled with status 599', async () => {
  fake = await startFakeDiscord();
  const res = await fetch(`${fake.apiUrl}/v10/guilds/${DEFAULTS.guildId}/bans`, { headers: { authorization: 'Bot fake-token' } });
  expect(res.status).toBe(599);
  expect(fake.unhandled.map((r) => `${r.method} ${r.path}`)).toEqual([`GET /guilds/${DEFAULTS.guildId}/bans`]);
  fake.unhandled.length = 0; // afterEach asserts every other test leaves it empty
});

test('the same nonce with enforce_nonce yields one channel message', async () => {
  const { fake, client } = await start();
  const channel = (await client.channels.fetch(GENERAL)) as TextChannel;
  const a = await channel.send({ content: 'job done', nonce: '12345', enforceNonce: true });
  const b = await channel.send({ content: 'job done', nonce: '12345', enforceNonce: true });
  expect(b.id).toBe(a.id);
  expect(fake.channelMessages(GENERAL)).toHaveLength(1);
  expect(fake.channelMessages(GENERAL)[0]?.nonce).toBe('12345');
});

test('button press: update edits the clicked message; deferUpdate + editReply edit it too', async () => {
  const { fake, client } = await start();
  const channel = (await client.channels.fetch(GENERAL)) as TextChannel;
  const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
    new ButtonBuilder().setCustomId('upscale:1').setLabel('Upscale').setStyle(ButtonStyle.Primary),
  );
  const sent = await channel.send({ content: 'pick', components: [row] });
  let got = nextInteraction(client);
  const press = await fake.buttonPress({ customId: 'upscale:1', messageId: sent.id });
  let i = await got;
  if (!i.isButton()) throw new Error('expected a button');
  expect(i.message.id).toBe(sent.id);
  expect(i.customId).toBe('upscale:1');
  await i.update({ content: 'picked', components: [] });
  expect(press.callbacks[0]?.type).toBe(7);
  expect(fake.messages.get(sent.id)).toMatchObject({ content: 'picked', components: [], edits: 1 });

  got = nextInteraction(client);
  const press2 = await fake.buttonPress({ customId: 'upscale:1', messageId: sent.id });
  i = await got;
  if (!i.isButton()) throw new Error('expected a button');
  await i.deferUpdate();
  await i.editReply('edited via @original');
  expect(press2.original()?.id).toBe(sent.id);
  expect(fake.messages.get(sent.id)?.content).toBe('edited via @original');
});

test('autocomplete and modal submit round-trip', async () => {
  const { fake, client } = await start();
  let got = nextInteraction(client);
  const ac = await fake.autocomplete({ name: 'imagine', options: [{ name: 'prompt', type: 3, value: 'x' }], focused: 'preset' });
  const a = await got;
  if (!a.isAutocomplete()) throw new Error('expected autocomplete');
  expect(a.options.getFocused(true)).toMatchObject({ name: 'preset', value: '' });
  await a.respond([{ name: 'Anime', value: 'anime' }]);
  expect((await ac.waitForCallback()).data).toEqual({ choices: [{ name: 'Anime', value: 'anime' }] });

  got = nextInteraction(client);
  const ms = await fake.modalSubmit({ customId: 'banned', fields: { words: 'foo, bar' } });
  const m = await got;
  if (!m.isModalSubmit()) throw new Error('expected modal submit');
  expect(m.fields.getTextInputValue('words')).toBe('foo, bar');
  await m.reply({ content: 'saved', flags: 64 });
  expect(ms.original()?.flags).toBe(64);
});

test('follow-up after a deferral replaces the placeholder; limits answer 50035 and 40005', async () => {
  const { fake, client } = await start();
  const got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'imagine', attachmentSizeLimit: 1000 });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await i.deferReply({ flags: 64 });
  const first = await i.followUp('first');
  expect(first.id).toBe(fi.original()?.id);
  expect(fi.original()).toMatchObject({ content: 'first', flags: 64 });
  const second = await i.followUp('second');
  expect(second.id).not.toBe(first.id);
  expect(fi.followUps.map((m) => m.content)).toEqual(['first', 'second']);
  expect((await apiError(i.editReply('x'.repeat(2001)))).code).toBe(50035);
  const big = await apiError(i.editReply({ files: [{ attachment: Buffer.alloc(1001), name: 'big.bin' }] }));
  expect([big.code, big.status]).toEqual([40005, 413]);
});

test('a public deferral the app deletes leaves room for a follow-up of its own (ephemeral if asked); one the user deletes answers 10008', async () => {
  const { fake, client } = await start();
  let got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await i.deferReply();
  const placeholder = fi.original()!;
  await i.deleteReply();
  const note = await i.followUp({ content: 'only you', flags: 64 });
  expect(note.id).not.toBe(placeholder.id);
  expect(fake.messages.get(note.id)).toMatchObject({ content: 'only you', flags: 64, deleted: false });
  expect(fake.messages.get(placeholder.id)).toMatchObject({ content: '', deleted: true });

  got = nextInteraction(client);
  const fj = await fake.slashCommand({ name: 'imagine' });
  const j = await got;
  if (!j.isChatInputCommand()) throw new Error('expected a chat input command');
  await j.deferReply();
  fake.deleteMessage(fj.original()!.id);
  expect((await apiError(j.followUp({ content: 'too late', flags: 64 }))).code).toBe(10008);
});

test('a dropped gateway connection resumes and interactions keep flowing', async () => {
  const { fake, client } = await start();
  fake.disconnectAll();
  await fake.waitFor(() => fake.gatewayConnections() === 1);
  const got = nextInteraction(client);
  await fake.slashCommand({ name: 'imagine' });
  expect((await got).isChatInputCommand()).toBe(true);
  expect(fake.identifies).toHaveLength(1);
});

test('a resume replays the dispatches the client had not seen, in order, before RESUMED', async () => {
  fake = await startFakeDiscord();
  const { WebSocket } = await import('ws');
  const frames: any[] = [];
  const open = (url: string) => {
    const ws = new WebSocket(url);
    ws.on('message', (m) => frames.push(JSON.parse(String(m))));
    return ws;
  };
  const url = `${fake.baseUrl.replace('http', 'ws')}/gateway?v=10&encoding=json`;
  const ws = open(url);
  await once(ws, 'open');
  ws.send(JSON.stringify({ op: 2, d: { token: fake.token, intents: 1, properties: {}, shard: [0, 1] } }));
  const ready = await fake.waitFor(() => frames.find((f) => f.t === 'READY'));
  await fake.waitFor(() => frames.some((f) => f.t === 'GUILD_CREATE'));
  const seenUpTo = Math.max(...frames.map((f) => f.s ?? 0));
  await fake.slashCommand({ name: 'imagine' });
  await fake.slashCommand({ name: 'imagine' });
  await fake.waitFor(() => frames.filter((f) => f.t === 'INTERACTION_CREATE').length === 2);
  // The client drops, claiming it never read the two interactions.
  ws.close();
  frames.length = 0;
  const again = open(url);
  await once(again, 'open');
  again.send(JSON.stringify({ op: 6, d: { token: fake.token, session_id: ready.d.session_id, seq: seenUpTo } }));
  await fake.waitFor(() => frames.some((f) => f.t === 'RESUMED'));
  const replayed = frames.filter((f) => f.op === 0).map((f) => [f.t, f.s]);
  expect(replayed).toEqual([
    ['INTERACTION_CREATE', seenUpTo + 1],
    ['INTERACTION_CREATE', seenUpTo + 2],
    ['RESUMED', seenUpTo + 3],
  ]);
  again.close();
});

test('registered commands are echoed with ids and kept', async () => {
  const { fake, client } = await start();
  const set = await client.application!.commands.set([{ name: 'imagine', description: 'Make an image' }], DEFAULTS.guildId);
  expect(set.first()?.name).toBe('imagine');
  expect(fake.registeredCommands(DEFAULTS.guildId)[0]).toMatchObject({ name: 'imagine', guild_id: DEFAULTS.guildId });
  const got = nextInteraction(client);
  await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  expect(i.isChatInputCommand() && i.commandId).toBe(set.first()?.id);
  const bad = await apiError(client.application!.commands.set([{ name: 'Bad Name', description: '' }]));
  expect(bad.code).toBe(50035);
});

test('reply with files, then edits keep, replace or drop attachments as Discord does', async () => {
  const { fake, client } = await start();
  const got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'imagine' });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  await i.reply({ content: 'one', files: [{ attachment: png(8, 8), name: 'one.png' }] });
  expect(fi.callbacks[0]).toMatchObject({ type: 4, files: [{ name: 'files[0]', filename: 'one.png' }] });
  expect(fi.original()?.attachments.map((a) => a.filename)).toEqual(['one.png']);
  await i.editReply({ content: 'kept' });
  expect(fi.original()?.attachments.map((a) => a.filename)).toEqual(['one.png']);
  const edited = await i.editReply({ files: [{ attachment: png(2, 2), name: 'two.png' }] });
  expect(fi.original()?.attachments.map((a) => a.filename)).toEqual(['two.png']);
  await i.editReply({ attachments: [...edited.attachments.values()], files: [{ attachment: png(1, 1), name: 'three.png' }] });
  expect(fi.original()?.attachments.map((a) => a.filename)).toEqual(['two.png', 'three.png']);
  await i.editReply({ attachments: [] });
  expect(fi.original()?.attachments).toEqual([]);
  expect(fi.original()?.edits).toBe(4);
});

test('CDN routes: served files, redirects, 404s and injected failures', async () => {
  fake = await startFakeDiscord();
  const url = fake.serveFile('x/in.png', png(5, 6), 'image/png');
  const redirect = fake.serveRedirect('x/moved.png', url);
  expect(url).toBe(`${fake.baseUrl}/attachments/x/in.png`);
  const res = await fetch(redirect);
  expect([res.status, res.headers.get('content-type'), (await res.arrayBuffer()).byteLength]).toEqual([200, 'image/png', png(5, 6).length]);
  expect((await fetch(`${fake.baseUrl}/attachments/nope.png`)).status).toBe(404);
  fake.failNext({ pathPrefix: '/attachments/x/', count: 1, status: 503 });
  expect((await fetch(url)).status).toBe(503);
  expect((await fetch(url)).status).toBe(200);
  expect(fake.cdnRequests.map((r) => r.status)).toEqual([302, 200, 404, 503, 200]);
});

test('a DM interaction carries user instead of member', async () => {
  const { fake, client } = await start();
  const got = nextInteraction(client);
  const fi = await fake.slashCommand({ name: 'quota', guildId: null });
  const i = await got;
  if (!i.isChatInputCommand()) throw new Error('expected a chat input command');
  expect(i.guildId).toBeNull();
  // The channel object itself is only cached with Partials.Channel (discord.js behaviour).
  expect(i.channelId).toBe(fi.payload.channel.id);
  expect(fi.payload.channel.type).toBe(1);
  expect(i.user.username).toBe('alice');
  await i.reply('dm reply');
  expect(fi.original()?.guildId).toBeUndefined();
});

test('a kicked bot gets guildDelete and 50001 Missing Access on its channels; a deleted channel gets channelDelete and 10003', async () => {
  const { fake, client } = await start();
  const channel = (await client.channels.fetch(NSFW)) as TextChannel;
  const deleted = once(client, Events.ChannelDelete);
  await fake.deleteChannel(NSFW);
  expect(((await deleted)[0] as TextChannel).id).toBe(NSFW);
  expect((await apiError(channel.send('hello'))).code).toBe(10003);

  const general = (await client.channels.fetch(GENERAL)) as TextChannel;
  const gone = once(client, Events.GuildDelete);
  await fake.removeBotFromGuild(DEFAULTS.guildId);
  await gone;
  expect(client.guilds.cache.has(DEFAULTS.guildId)).toBe(false);
  const err = await apiError(general.send('hello'));
  expect([err.status, err.code]).toEqual([403, 50001]);
});
