# syntax=docker/dockerfile:1
# One image for the bot, the worker and the migration job; compose picks the command.
# Node 24 LTS, the line package.json's engines and .nvmrc name and CI tests on.
# .ci/image-replay.ts replays the runtime stage below without Docker: keep its steps to COPY, ENV,
# WORKDIR, USER, CMD and the npm commands it knows, or teach it the new one.
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# Generates the Prisma client, then compiles to dist/.
RUN npm run build

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts/prune-dev-only.mjs ./scripts/
# npm keeps devDependencies that are optional peers of production packages (the Prisma CLI, ~230 MB).
RUN npm ci --omit=dev --no-audit --no-fund && node scripts/prune-dev-only.mjs && npm cache clean --force
COPY --from=build /app/dist ./dist
# migrate.js and doctor.js look for the migrations next to themselves.
COPY prisma/migrations ./dist/prisma/migrations
USER node
# Overridden per service in the compose files. Also in the image:
#   node dist/scripts/doctor.js   node dist/scripts/status.js   node dist/scripts/invite.js
#   node dist/bot/register-commands.js
# --liftoff-only (bot only): its WebAssembly is undici's HTTP parser (and Prisma's query compiler,
# loaded for the rare settings write). Optimising the parser with TurboFan, which the first REST
# calls trigger, leaves ~8 MB of freed compiler memory held by the process for good, to parse a
# few small Discord responses per job microseconds faster (bench/overhead.ts measures both).
CMD ["node", "--liftoff-only", "dist/bot/main.js"]
