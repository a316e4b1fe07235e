/**
 * Import rules (DESIGN.md §5.2), checked in CI by `npm run lint:imports`.
 * TypeScript 7.0's package has no compiler API (dependency-cruiser takes TypeScript 2-6 or 7.1+), so
 * files are parsed with swc; swc does not tell type-only imports apart, so every rule counts them.
 */
const PRODUCT = '^(bot|worker|commands|core)/';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'Modules never import each other in a loop, not even through types.',
      from: { path: PRODUCT },
      to: { circular: true },
    },
    {
      name: 'core-is-pure',
      severity: 'error',
      comment: 'Pure core/ depends on zod and other pure core files only, so tests/core needs no services.',
      from: { path: '^core/', pathNot: '^core/io/' },
      to: { pathNot: ['^core/(?!io/)[^/]+\\.ts$', '^node_modules/zod/'] },
    },
    {
      name: 'core-io-no-processes',
      severity: 'error',
      comment: 'core/io is shared by both processes: it knows neither of them, nor Discord, nor Prisma.',
      from: { path: '^core/io/' },
      to: { path: ['^(bot|worker|commands)/', '^node_modules/(discord\\.js|@discordjs|@prisma|pg)/', '^generated/'] },
    },
    {
      name: 'commands-never-reach-the-bot',
      severity: 'error',
      comment:
        'Handlers use what they are handed (commands/context.ts, implemented by bot/main.ts), never the bot’s internals; the bot imports the handlers, not the other way round.',
      from: { path: '^commands/' },
      to: { path: '^bot/' },
    },
    {
      name: 'commands-no-worker',
      severity: 'error',
      from: { path: '^commands/' },
      to: { path: ['^worker/', '^node_modules/(bullmq|ioredis|@prisma|pg)/', '^generated/'] },
    },
    {
      name: 'commands-no-core-io',
      severity: 'error',
      comment:
        'I/O reaches handlers through their context (commands/context.ts). swc, the parser TypeScript 7 leaves us, does not mark type-only imports, so this is stricter than DESIGN.md (types only).',
      from: { path: '^commands/' },
      to: { path: '^core/io/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'bot-no-worker',
      severity: 'error',
      from: { path: '^bot/' },
      to: { path: '^worker/' },
    },
    {
      name: 'worker-stays-in-its-lane',
      severity: 'error',
      comment: 'The worker holds no Discord token and no database URL: it cannot reach them in code either.',
      from: { path: '^worker/' },
      to: { path: ['^(bot|commands)/', '^node_modules/(discord\\.js|@discordjs|@prisma|pg)/', '^generated/'] },
    },
    {
      name: 'prisma-only-in-the-store',
      severity: 'error',
      comment: 'Only bot/store/ talks to Postgres.',
      from: { path: PRODUCT, pathNot: '^bot/store/' },
      to: { path: ['^node_modules/(@prisma|pg)/', '^generated/'] },
    },
  ],
  options: {
    parser: 'swc',
    tsPreCompilationDeps: true,
    // Generated code is a target to check (only the store may reach the Prisma client), never a source.
    doNotFollow: { path: ['node_modules', '^generated/'] },
    exclude: { path: ['^dist/'] },
    enhancedResolveOptions: {
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
