/**
 * The image as a server owner runs it, without a Docker engine: replays the Dockerfile in temporary
 * folders and starts every process of the image with plain `node` (no tsx, no sources, no dev
 * dependencies, no fonts), the way docker-compose.yml and docker-compose.worker.yml start them.
 *
 *   npm run image:replay     (the last step of .ci/run)
 *
 * 1. Build stage: the build context (the checkout minus .dockerignore) in a temp folder; its `npm ci`
 *    is this checkout's node_modules (same lockfile, just installed); then its RUN steps as written.
 * 2. Runtime stage: every COPY, ENV and RUN of the Dockerfile, in order: a real `npm ci --omit=dev`.
 * 3. Checks: no dev dependency installed, nothing in dist/ imports tsx; then, against Postgres,
 *    Redis, the fake Discord and a fake AUTOMATIC1111: the migration (twice), the worker (NSFW
 *    classifier on), the bot (registers its commands, answers /imagine with a numbered grid),
 *    register-commands, doctor, status and invite; settings from `.env` in the working directory
 *    as in the image; SIGTERM ends the bot and the worker cleanly.
 * What still needs a Docker engine: the base image itself, USER node, compose's networking,
 * health checks and restart policy.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import sharp from 'sharp';
import { startFakeA1111 } from '../tests/fakes/a1111.js';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const PG_ADMIN = process.env.TEST_PG_URL || 'postgresql://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const DEV_ONLY = ['tsx', 'typescript', 'vitest', 'prisma', '@biomejs/biome'];

const log = (s: string) => process.stdout.write(`${s}\n`);
function fail(s: string): never {
  throw new Error(s);
}

// ---------------------------------------------------------------- Dockerfile and compose files

interface Instruction {
  op: string;
  args: string;
}

/** The instructions of each stage (`FROM … AS name`), continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Map<string, Instruction[]> {
  const stages = new Map<string, Instruction[]>();
  let current: Instruction[] | undefined;
  const logical = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of logical) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [op = '', ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const name = /\bAS\s+(\S+)/i.exec(args)?.[1] ?? fail(`unnamed stage: ${line}`);
      current = [];
      stages.set(name, current);
    } else if (current) current.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

/** `command:` of every service in a compose file (flow sequences only, as ours are written). */
function composeCommands(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let service: string | undefined;
  let inServices = false;
  for (const line of text.split('\n')) {
    if (/^services:\s*$/.test(line)) inServices = true;
    else if (/^\S/.test(line)) inServices = false;
    const s = /^ {2}([a-z0-9_-]+):\s*$/.exec(line);
    if (inServices && s) service = s[1];
    const c = /^ {4}command:\s*(\[.*\])\s*$/.exec(line);
    if (inServices && service && c) out.set(service, JSON.parse(c[1]!) as string[]);
  }
  return out;
}

// ---------------------------------------------------------------- processes

interface Proc {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

function start(cmd: string[], cwd: string, env: NodeJS.ProcessEnv): Proc {
  const [bin, ...args] = cmd;
  if (bin !== 'node') fail(`expected a plain node command, got ${cmd.join(' ')}`);
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stdout!.on('data', (c: Buffer) => output.push(c.toString()));
  child.stderr!.on('data', (c: Buffer) => output.push(c.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, output, exited };
}

async function runToEnd(
  cmd: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<{ code: number | null; out: string }> {
  const p = start(cmd, cwd, env);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, out: p.output.join('') };
}

async function waitForLine(p: Proc, needle: string, what: string, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!p.output.join('').includes(needle)) {
    if (p.child.exitCode !== null) fail(`${what} exited with ${p.child.exitCode}:\n${p.output.join('').slice(-3000)}`);
    if (Date.now() - t0 > timeoutMs) fail(`${what} did not log "${needle}" within ${timeoutMs} ms:\n${p.output.join('').slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolvePort(port));
    });
  });
}

function sh(cmd: string, cwd: string, env: NodeJS.ProcessEnv = process.env): void {
  log(`$ ${cmd}    (in ${cwd})`);
  execFileSync('sh', ['-c', cmd], { cwd, env, stdio: 'inherit' });
}

// ---------------------------------------------------------------- the stages

/** Copies the build context: the checkout minus .dockerignore (plain paths, as ours are). */
async function copyContext(into: string): Promise<void> {
  const ignore = (await readFile(join(ROOT, '.dockerignore'), 'utf8'))
    .split('\n')
    .map((l) => l.trim().replace(/\/$/, ''))
    .filter((l) => l && !l.startsWith('#'));
  await cp(ROOT, into, {
    recursive: true,
    filter: (src) => {
      const rel = relative(ROOT, src);
      return !ignore.some((p) => rel === p || rel.startsWith(`${p}/`));
    },
  });
}

/** Runs one RUN line of the Dockerfile: the npm commands it is known to use, and nothing else. */
function replayRun(args: string, cwd: string, stage: string, env: NodeJS.ProcessEnv): void {
  for (const part of args.split('&&').map((p) => p.trim())) {
    if (stage === 'build' && /^npm ci( |$)/.test(part)) {
      log(`  (build stage "${part}": this checkout's node_modules, installed from the same lockfile)`);
    } else if (/^npm ci --omit=dev( |$)/.test(part) || /^npm run build$/.test(part) || part === 'node scripts/prune-dev-only.mjs') {
      sh(part, cwd, env);
    } else if (/^npm cache clean/.test(part)) {
      log(`  (skipped "${part}": it would empty this machine's npm cache, and changes nothing in the app)`);
    } else fail(`the replay does not know RUN step "${part}" of stage ${stage}: teach .ci/image-replay.ts`);
  }
}

async function replayStage(
  name: string,
  steps: Instruction[],
  dirs: { context: string; stages: Map<string, string> },
): Promise<{ dir: string; env: NodeJS.ProcessEnv; cmd?: string[] }> {
  const base = await mkdtemp(join(tmpdir(), `imagebot-${name}-`));
  let workdir = base;
  const env: NodeJS.ProcessEnv = {};
  let cmd: string[] | undefined;
  if (name === 'build') {
    // The build stage works on the context itself.
    await copyContext(base);
    await symlink(join(ROOT, 'node_modules'), join(base, 'node_modules'), 'dir');
  }
  for (const { op, args } of steps) {
    switch (op) {
      case 'WORKDIR':
        workdir = base; // /app: the stage's folder
        break;
      case 'ENV': {
        const [k, ...v] = args.split('=');
        env[k!] = v.join('=');
        break;
      }
      case 'COPY': {
        const words = args.split(/\s+/);
        const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
        const dest = words.pop()!;
        const srcRoot = from ? (dirs.stages.get(from) ?? fail(`COPY --from=${from}: no such stage`)) : dirs.context;
        for (const src of words) {
          const abs = from ? join(srcRoot, src.replace(/^\/app\/?/, '')) : join(srcRoot, src);
          const target = dest.endsWith('/') ? join(workdir, dest, src.split('/').pop()!) : join(workdir, dest);
          if (name === 'build' && !from && src === '.') continue; // the context is already here
          await mkdir(join(target, '..'), { recursive: true });
          await cp(abs, target, { recursive: true });
        }
        break;
      }
      case 'RUN':
        replayRun(args, workdir, name, { ...process.env, ...env });
        break;
      case 'CMD':
        cmd = JSON.parse(args) as string[];
        break;
      case 'USER':
      case 'ARG':
        break;
      default:
        fail(`the replay does not know ${op} in stage ${name}: teach .ci/image-replay.ts`);
    }
  }
  return { dir: base, env, cmd };
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else yield p;
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const t0 = Date.now();
  const stages = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
  const compose = composeCommands(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8'));
  const workerOnly = composeCommands(await readFile(join(ROOT, 'docker-compose.worker.yml'), 'utf8'));
  const cleanups: Array<() => Promise<unknown>> = [];
  const procs: Proc[] = [];
  try {
    log('== build stage');
    const build = await replayStage('build', stages.get('build') ?? fail('no build stage'), { context: ROOT, stages: new Map() });
    cleanups.push(() => rm(build.dir, { recursive: true, force: true }));
    log('== runtime stage');
    const runtime = await replayStage('runtime', stages.get('runtime') ?? fail('no runtime stage'), {
      context: build.dir,
      stages: new Map([['build', build.dir]]),
    });
    cleanups.push(() => rm(runtime.dir, { recursive: true, force: true }));
    const app = runtime.dir;

    log('== what the image holds');
    for (const dep of DEV_ONLY) {
      if (await stat(join(app, 'node_modules', dep)).catch(() => null)) fail(`dev dependency ${dep} is installed in the image`);
    }
    for (const gone of ['bot/main.ts', 'tests', 'scripts/doctor.ts', 'generated', 'node_modules/.bin/prisma']) {
      if (await stat(join(app, gone)).catch(() => null)) fail(`${gone} is in the image; only dist/ should be`);
    }
    for await (const file of walk(join(app, 'dist'))) {
      if (!file.endsWith('.js')) continue;
      if (/from ['"]tsx|import\(['"]tsx|require\(['"]tsx/.test(await readFile(file, 'utf8'))) fail(`${file} imports tsx`);
    }
    log(`ok: no ${DEV_ONLY.join(', ')}; no sources; nothing in dist/ imports tsx`);

    // The image has no fonts: neither does this fontconfig.
    const fontsDir = await mkdtemp(join(tmpdir(), 'imagebot-nofonts-'));
    cleanups.push(() => rm(fontsDir, { recursive: true, force: true }));
    await writeFile(
      join(fontsDir, 'fonts.conf'),
      `<?xml version="1.0"?>\n<fontconfig><cachedir>${fontsDir}/cache</cachedir></fontconfig>\n`,
    );

    const discord = await startFakeDiscord();
    cleanups.push(() => discord.close());
    const a1111 = await startFakeA1111({});
    cleanups.push(() => a1111.close());
    const suffix = randomBytes(4).toString('hex');
    const db = `imagebot_replay_${suffix}`;
    const dbUrl = new URL(PG_ADMIN);
    dbUrl.pathname = `/${db}`;
    const prefix = `replay-${suffix}`;
    cleanups.push(async () => {
      const admin = new pg.Client({ connectionString: PG_ADMIN });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
      await admin.end();
      const redis = new Redis(REDIS_URL);
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    });

    // Everything an owner puts in .env; the processes read it from their working directory, as in the image.
    await writeFile(
      join(app, '.env'),
      [
        `DISCORD_TOKEN=${discord.token}`,
        `DISCORD_APP_ID=${discord.appId}`,
        `DISCORD_API_URL=${discord.apiUrl}`,
        `DISCORD_ATTACHMENT_ORIGINS=${discord.baseUrl}`,
        `DATABASE_URL=${dbUrl}`,
        `REDIS_URL=${REDIS_URL}`,
        `QUEUE_PREFIX=${prefix}`,
        `A1111_URL=${a1111.url}`,
        'NSFW_CLASSIFIER=on',
        '',
      ].join('\n'),
    );
    // The host's environment, less anything of ours, plus the image's ENV and no fonts.
    const env: NodeJS.ProcessEnv = {
      ...Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !/^(DISCORD_|A1111_|DATABASE_URL|REDIS_URL|QUEUE_PREFIX|NODE_OPTIONS)/.test(k)),
      ),
      ...runtime.env,
      FONTCONFIG_FILE: join(fontsDir, 'fonts.conf'),
      FONTCONFIG_PATH: fontsDir,
    };

    log('== migrate (docker-compose.yml service "migrate"), twice');
    const migrate = compose.get('migrate') ?? fail('no migrate service in docker-compose.yml');
    const first = await runToEnd(migrate, app, env);
    if (first.code !== 0 || !/applied \d{14}_/.test(first.out)) fail(`migrate failed (${first.code}):\n${first.out}`);
    const second = await runToEnd(migrate, app, env);
    if (second.code !== 0 || !second.out.includes('no pending migrations')) fail(`second migrate was not a no-op:\n${second.out}`);
    log(first.out.trim());
    log(second.out.trim());

    log('== worker (docker-compose.worker.yml), NSFW classifier on');
    const workerCmd = workerOnly.get('worker') ?? fail('no worker service in docker-compose.worker.yml');
    if (JSON.stringify(workerCmd) !== JSON.stringify(compose.get('worker'))) fail('the two compose files start the worker differently');
    const workerPort = await freePort();
    const worker = start(workerCmd, app, { ...env, HTTP_PORT: String(workerPort) });
    procs.push(worker);
    await waitForLine(worker, '"worker ready"', 'worker');
    const ready = await fetch(`http://127.0.0.1:${workerPort}/readyz`);
    if (!ready.ok) fail(`worker /readyz answered ${ready.status}`);
    log('ok: worker ready, /readyz 200');

    log('== bot (docker-compose.yml service "bot"; also the image CMD)');
    const botCmd = compose.get('bot') ?? fail('no bot service in docker-compose.yml');
    if (JSON.stringify(botCmd) !== JSON.stringify(runtime.cmd)) fail(`the image CMD ${runtime.cmd} is not the bot's command ${botCmd}`);
    const bot = start(botCmd, app, { ...env, HTTP_PORT: String(await freePort()) });
    procs.push(bot);
    await waitForLine(bot, '"bot ready"', 'bot');
    const registered = discord.registeredCommands().map((c: { name: string }) => c.name);
    if (registered.sort().join() !== 'admin,forget,imagine,inpaint,quota') fail(`the bot registered ${registered.join()} at start`);
    log(`ok: bot ready; registered ${registered.map((n: string) => `/${n}`).join(' ')} at start`);

    const i = await discord.slashCommand({
      name: 'imagine',
      options: [
        { name: 'prompt', type: 3, value: 'a lighthouse at dusk' },
        { name: 'count', type: 4, value: 4 },
      ],
    });
    const msg = await discord
      .waitFor(() => {
        const m = i.original();
        return m?.attachments.some((a) => a.filename.startsWith('grid.')) || /refunded|could not|went wrong/.test(m?.content ?? '')
          ? m
          : undefined;
      }, 120_000)
      .catch(() =>
        fail(
          `no result for /imagine; reply: ${i.original()?.content}\nbot: ${bot.output.join('').slice(-2000)}\nworker: ${worker.output.join('').slice(-2000)}`,
        ),
      );
    const grid =
      msg.attachments.find((a) => a.filename.startsWith('grid.')) ??
      fail(`the /imagine result has no grid: "${msg.content}"\nworker: ${worker.output.join('').slice(-4000)}`);
    const images = msg.attachments.filter((a) => a.filename.startsWith('image-')).length;
    // Tile 1's label centre: a white digit in a dark disc, drawn without any font on the machine.
    const { data, info } = await sharp(grid.data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    let bright = 0;
    for (let y = 21; y <= 39; y++)
      for (let x = 21; x <= 39; x++) {
        const p = (y * info.width + x) * info.channels;
        if ((data[p]! + data[p + 1]! + data[p + 2]!) / 3 > 160) bright++;
      }
    if (images !== 4 || bright < 25) fail(`the /imagine result has ${images} images and a grid label of ${bright} bright pixels`);
    log(`ok: /imagine count 4 → ${images} images and ${grid.filename} (${info.width}×${info.height}), its numbers drawn`);

    log('== register-commands, doctor, status, invite (dist/, plain node)');
    const reg = await runToEnd(['node', 'dist/bot/register-commands.js'], app, env);
    if (reg.code !== 0 || !reg.out.includes('commands registered')) fail(`register-commands:\n${reg.out}`);
    const doctor = await runToEnd(['node', 'dist/scripts/doctor.js', '--role', 'all'], app, env);
    log(doctor.out.trim());
    if (doctor.code !== 0) fail('doctor failed');
    const status = await runToEnd(['node', 'dist/scripts/status.js'], app, env);
    log(status.out.trim());
    if (status.code !== 0 || !status.out.includes('Jobs, last 24 h')) fail('status failed');
    const invite = await runToEnd(['node', 'dist/scripts/invite.js'], app, env);
    if (invite.code !== 0 || !invite.out.startsWith('https://discord.com/oauth2/authorize?client_id=')) fail(`invite:\n${invite.out}`);
    log(invite.out.trim());

    log('== SIGTERM');
    for (const p of [bot, worker]) p.child.kill('SIGTERM');
    const codes = await Promise.all([bot.exited, worker.exited]);
    if (codes.some((c) => c !== 0)) fail(`bot and worker exited with ${codes.join(', ')} after SIGTERM`);
    log('ok: bot and worker exited 0');
    log(`\nimage replay passed in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  } finally {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.allSettled(procs.map((p) => p.exited));
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => log(`cleanup: ${(err as Error).message}`));
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`image replay FAILED: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
