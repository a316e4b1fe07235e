# syntax=docker/dockerfile:1
# One image for the bot, the worker and the migration job; compose picks the command.
# Built and tested on the current Node LTS; package.json keeps engines >=20.19.
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run db:generate && npm run build

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY prisma ./prisma
# migrate.js looks for its migrations next to itself.
COPY prisma/migrations ./dist/prisma/migrations
USER node
# Overridden per service in docker-compose.yml.
CMD ["node", "dist/bot/main.js"]
