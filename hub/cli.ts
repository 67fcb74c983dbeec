// `synchub hub ...`: serve, and the admin commands that act on the store directly.
import { existsSync } from 'node:fs';
import { z } from 'zod';
import { SyncError } from '../shared/errors.ts';
import { formatCommandList, parseCommand, portFlag, UsageError, type CommandHelp } from '../shared/cli.ts';
import { createLogger, logLevelFlag, type Logger } from '../shared/log.ts';
import { Hub } from './server.ts';
import type { EventStore } from './store/event-store.ts';
import { PostgresEventStore, redact } from './store/postgres.ts';
import { SqliteEventStore } from './store/sqlite.ts';
import { assertProjectName, createToken } from './tokens.ts';

const DEFAULT_DB = './data/hub.db';
const DEFAULT_ADMIN_PORT = 9787;

const storeFlags = { db: { type: 'string' }, postgres: { type: 'string' } } as const;
const storeSchema = {
  db: z.string().min(1).optional(),
  postgres: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// or postgresql:// URL')
    .optional(),
};

async function openStore(flags: { db?: string; postgres?: string }, create = false, log?: Logger): Promise<EventStore> {
  if (flags.postgres !== undefined) {
    if (flags.db !== undefined) throw new UsageError('give either --db (SQLite) or --postgres (PostgreSQL), not both');
    return PostgresEventStore.open(flags.postgres, log);
  }
  const path = flags.db ?? DEFAULT_DB;
  // Only `serve` and `project create` may create the database: any other admin command
  // on a missing (e.g. mistyped) --db fails instead of leaving a new empty hub db behind.
  if (!create && path !== ':memory:' && !existsSync(path)) throw new SyncError('no_database', `no hub database at ${path}`);
  return new SqliteEventStore(path);
}

/** Every `synchub hub ...` command, as `synchub hub --help` lists them and each `--help` shows. */
export const HUB_COMMANDS = {
  serve: {
    usage: 'synchub hub serve [--port 8787] [--host 127.0.0.1] [--db ./data/hub.db | --postgres URL] [--admin-port 9787] [--admin-host 127.0.0.1] [--tls-cert FILE --tls-key FILE] [--retain-events N]',
    summary: 'Run the hub: WebSocket sync on --port, health/metrics/status/dashboard on the admin listener.',
    details: [
      '--port N          public port (WebSocket sync, /healthz and /readyz); 0 picks a free one (default 8787)',
      '--host H          public address (default 127.0.0.1; 0.0.0.0 for every interface)',
      '--db FILE         the hub database, created if missing (default ./data/hub.db)',
      '--postgres URL    a PostgreSQL store instead (postgres://...), shared by several hub nodes',
      '--admin-port N    admin listener: /healthz /readyz /metrics /api/status and the dashboard at /;',
      '                  0 picks a free port; default 9787, and when that is taken the hub warns and',
      '                  serves without it, while an explicit port that cannot be bound is fatal',
      '--admin-host H    admin address (default 127.0.0.1: it has no auth, keep it off public interfaces)',
      '--tls-cert F --tls-key F   serve wss:// with these PEM files (reloaded on SIGHUP)',
      '--allowed-origins O,O      browser origins allowed to connect (default: any; the token is the credential)',
      'limits (defaults in the README, Security): --max-connections N, --max-connections-per-token N,',
      '  --max-auth-failures-per-minute N, --max-events-per-second N, --max-event-bytes N,',
      '  --max-frame-bytes N, --max-batch-events N, --tail-bytes N, --hello-timeout-ms N, --ping-interval-ms N',
      '--tls-cert F      serve wss:// (and https) with this certificate (PEM; reloaded on SIGHUP)',
      '--tls-key F       ...and this private key (PEM); the two go together',
      '--retain-events N keep only the newest N events of each project (compacted every minute; the state',
      '                  and the dedup keys stay, new devices bootstrap from a snapshot). SQLite store only',
      '--log-level L     debug|info|warn|error (default info); logs are JSON lines unless stderr is a terminal',
    ].join('\n'),
    example: 'synchub hub serve --port 8787 --db /var/lib/synchub/hub.db --admin-port 9787',
  },
  'project create': {
    usage: 'synchub hub project create <project> [--db ./data/hub.db | --postgres URL]',
    summary: 'Create a project (letters, digits, . _ -; up to 100 characters).',
    example: 'synchub hub project create notes --db /var/lib/synchub/hub.db',
  },
  'project list': {
    usage: 'synchub hub project list [--db ./data/hub.db | --postgres URL]',
    summary: 'List projects with their head seq.',
    example: 'synchub hub project list --db /var/lib/synchub/hub.db',
  },
  'token create': {
    usage: 'synchub hub token create --project <project> [--role read|write|admin] [--db ./data/hub.db | --postgres URL]',
    summary: 'Create a token for a project and print it once on stdout (read: stream only; write: push too).',
    example: 'synchub hub token create --project notes --role write --db /var/lib/synchub/hub.db > device.token',
  },
  'token list': {
    usage: 'synchub hub token list --project <project> [--db ./data/hub.db | --postgres URL]',
    summary: "List a project's tokens (ids and roles, never the tokens).",
    example: 'synchub hub token list --project notes --db /var/lib/synchub/hub.db',
  },
  'token revoke': {
    usage: 'synchub hub token revoke <token-id> [--db ./data/hub.db | --postgres URL]',
    summary: 'Revoke a token by its id (from token list).',
    example: 'synchub hub token revoke 0123456789abcdef --db /var/lib/synchub/hub.db',
  },
  compact: {
    usage: 'synchub hub compact --project <project> --keep-events N [--db ./data/hub.db]',
    summary: "Drop a project's log events older than the newest N, keeping its state and the dedup keys (safe while the hub serves).",
    details: 'A device whose cursor is older is told cursor_too_old and bootstraps again by itself. The file shrinks on VACUUM (or in a backup).',
    example: 'synchub hub compact --project notes --keep-events 100000 --db /var/lib/synchub/hub.db',
  },
  backup: {
    usage: 'synchub hub backup --to FILE [--db ./data/hub.db]',
    summary: 'Write a consistent copy of the hub database to one new file (no -wal beside it) while the hub serves.',
    details: 'To restore: stop the hub, copy the file over the database (remove hub.db-wal and hub.db-shm), start the hub.',
    example: 'synchub hub backup --to /backups/hub-2026-11-28.db --db /var/lib/synchub/hub.db',
  },
} satisfies Record<string, CommandHelp>;

const HUB_HELP = `usage: synchub hub <command> [flags]   (synchub hub <command> --help for one)\n\n${formatCommandList(Object.values(HUB_COMMANDS))}\n`;

export async function hubCli(argv: string[]): Promise<number | void> {
  const [cmd, sub, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HUB_HELP);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === 'serve') return serve([sub, ...rest].filter((a): a is string => a !== undefined));
  if (cmd === 'project' && sub === 'create') return projectCreate(rest);
  if (cmd === 'project' && sub === 'list') return projectList(rest);
  if (cmd === 'token' && sub === 'create') return tokenCreate(rest);
  if (cmd === 'token' && sub === 'list') return tokenList(rest);
  if (cmd === 'token' && sub === 'revoke') return tokenRevoke(rest);
  if (cmd === 'compact') return compact([sub, ...rest].filter((a): a is string => a !== undefined));
  if (cmd === 'backup') return backup([sub, ...rest].filter((a): a is string => a !== undefined));
  throw new UsageError(`unknown command: hub ${argv.join(' ')} (see: synchub hub --help)`);
}

/** The hub's limits as `serve` flags (and SYNCHUB_* variables): flag -> hub option. Defaults live in hub/config.ts. */
export const LIMIT_FLAGS = {
  'max-connections': 'maxConnections',
  'max-connections-per-token': 'maxConnectionsPerToken',
  'max-auth-failures-per-minute': 'maxAuthFailuresPerMinute',
  'max-events-per-second': 'maxEventsPerSecond',
  'max-event-bytes': 'maxEventBytes',
  'max-frame-bytes': 'maxFrameBytes',
  'max-batch-events': 'maxBatchEvents',
  'tail-bytes': 'tailBytes',
  'hello-timeout-ms': 'helloTimeoutMs',
  'ping-interval-ms': 'pingIntervalMs',
} as const;
const positiveFlag = z
  .string()
  .regex(/^\d+$/, 'must be a whole number')
  .transform(Number)
  .pipe(z.number().int().positive().max(Number.MAX_SAFE_INTEGER));
const limitOptions = Object.fromEntries(Object.keys(LIMIT_FLAGS).map((f) => [f, { type: 'string' }])) as Record<keyof typeof LIMIT_FLAGS, { type: 'string' }>;
const limitSchema = Object.fromEntries(Object.keys(LIMIT_FLAGS).map((f) => [f, positiveFlag.optional()])) as Record<keyof typeof LIMIT_FLAGS, z.ZodOptional<typeof positiveFlag>>;

async function serve(argv: string[]): Promise<void> {
  const flags = parseCommand(
    argv,
    {
      port: { type: 'string' },
      host: { type: 'string' },
      'admin-port': { type: 'string' },
      'admin-host': { type: 'string' },
      'log-level': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'retain-events': { type: 'string' },
      'allowed-origins': { type: 'string' },
      ...limitOptions,
      ...storeFlags,
    },
    z
      .object({
        port: portFlag.default(8787),
        host: z.string().min(1).default('127.0.0.1'),
        'admin-port': portFlag.optional(),
        'admin-host': z.string().min(1).default('127.0.0.1'),
        'log-level': logLevelFlag.optional(),
        'tls-cert': z.string().min(1).optional(),
        'tls-key': z.string().min(1).optional(),
        'retain-events': countFlag.optional(),
        'allowed-origins': z
          .string()
          .transform((s) => s.split(',').map((o) => o.trim()).filter(Boolean))
          .pipe(z.array(z.string().regex(/^https?:\/\/[^/\s]+$/, 'expected origins like https://app.example, comma-separated')).min(1))
          .optional(),
        ...limitSchema,
        ...storeSchema,
        positionals: z.array(z.string()).max(0),
      })
      .refine((f) => (f['tls-cert'] === undefined) === (f['tls-key'] === undefined), { message: '--tls-cert and --tls-key go together', path: ['tls-cert'] }),
    HUB_COMMANDS.serve,
  );
  const tls = flags['tls-cert'] && flags['tls-key'] ? { certFile: flags['tls-cert'], keyFile: flags['tls-key'] } : null;
  for (const file of tls ? [tls.certFile, tls.keyFile] : []) if (!existsSync(file)) throw new UsageError(`no such file: ${file}`);
  const log = createLogger('synchub-hub', flags['log-level']);
  const store = await openStore(flags, true, log);
  const hub = new Hub(
    store,
    {
      port: flags.port,
      host: flags.host,
      tls,
      retainEvents: flags['retain-events'],
      // Not given: the default port, and another hub on this machine may hold it (a warning, not a failure).
      adminPort: flags['admin-port'] ?? DEFAULT_ADMIN_PORT,
      adminPortOptional: flags['admin-port'] === undefined,
      adminHost: flags['admin-host'],
      allowedOrigins: flags['allowed-origins'] ?? null,
      ...Object.fromEntries(Object.entries(LIMIT_FLAGS).flatMap(([flag, option]) => (flags[flag as keyof typeof LIMIT_FLAGS] === undefined ? [] : [[option, flags[flag as keyof typeof LIMIT_FLAGS]]]))),
    },
    log,
  );
  // A renewed certificate is picked up without a restart.
  process.on('SIGHUP', () => hub.reloadTls());
  let port: number;
  try {
    port = await hub.listen();
  } catch (err) {
    await store.close();
    throw err;
  }
  const db = flags.postgres !== undefined ? `--postgres ${redact(flags.postgres)}` : `--db ${flags.db ?? DEFAULT_DB}`;
  const admin = hub.adminPort === null ? null : `http://${flags['admin-host']}:${hub.adminPort}`;
  process.stdout.write(
    `synchub hub listening on ${tls ? 'wss' : 'ws'}://${flags.host}:${port}  (store: ${db})\n` +
      (admin ? `  dashboard: ${admin}/   metrics: ${admin}/metrics   ready: ${admin}/readyz\n` : `  admin listener: off (port taken; pick one with --admin-port)\n`) +
      `  connect: npx synchub hub project create myproj ${db}\n` +
      `           npx synchub hub token create --project myproj ${db} > token.txt\n` +
      `           npx synchub agent run --db app.db --hub ws://${flags.host}:${port} --project myproj --token-file token.txt\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'signal received');
      hub.close().then(resolve, (err) => {
        log.error({ err: String(err) }, 'shutdown failed');
        process.exitCode = 1;
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

const projectArg = z.string().superRefine((name, ctx) => {
  try {
    assertProjectName(name);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

async function withStore<T>(flags: { db?: string; postgres?: string }, fn: (store: EventStore) => Promise<T>, create = false): Promise<T> {
  const store = await openStore(flags, create);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function projectCreate(argv: string[]): Promise<void> {
  const f = parseCommand(argv, storeFlags, z.object({ ...storeSchema, positionals: z.tuple([projectArg]) }), HUB_COMMANDS['project create']);
  const name = f.positionals[0];
  await withStore(f, (s) => s.createProject(name), true);
  process.stdout.write(`created project ${name}\n`);
}

async function projectList(argv: string[]): Promise<void> {
  const f = parseCommand(argv, storeFlags, z.object({ ...storeSchema, positionals: z.tuple([]) }), HUB_COMMANDS['project list']);
  const projects = await withStore(f, (s) => s.listProjects());
  for (const p of projects) process.stdout.write(`${p.name}\thead=${p.headSeq}\tcreated=${p.createdAt}\n`);
}

async function tokenCreate(argv: string[]): Promise<void> {
  const f = parseCommand(
    argv,
    { project: { type: 'string' }, role: { type: 'string' }, ...storeFlags },
    z.object({ project: projectArg, role: z.enum(['read', 'write', 'admin']).default('write'), ...storeSchema, positionals: z.tuple([]) }),
    HUB_COMMANDS['token create'],
  );
  const { token, record } = await withStore(f, (s) => createToken(s, f.project, f.role));
  // The token on stdout alone (so `> token.txt` works); the rest on stderr.
  process.stdout.write(`${token}\n`);
  process.stderr.write(`token ${record.id} (${record.role}) for project ${record.project}: shown once, store it now\n`);
}

async function tokenList(argv: string[]): Promise<void> {
  const f = parseCommand(argv, { project: { type: 'string' }, ...storeFlags }, z.object({ project: projectArg, ...storeSchema, positionals: z.tuple([]) }), HUB_COMMANDS['token list']);
  const tokens = await withStore(f, async (s) => {
    // An unknown project is bad input (a typo), not an empty list.
    if (!(await s.projectExists(f.project))) throw new SyncError('unknown_project', `project ${f.project} does not exist`);
    return s.listTokens(f.project);
  });
  for (const t of tokens) {
    process.stdout.write(`${t.id}\t${t.role}\tcreated=${t.createdAt}\t${t.revokedAt ? `revoked=${t.revokedAt}` : 'active'}\n`);
  }
}

async function tokenRevoke(argv: string[]): Promise<number | void> {
  const f = parseCommand(argv, storeFlags, z.object({ ...storeSchema, positionals: z.tuple([z.string().regex(/^[0-9a-f]{16}$/, 'expected a token id (16 hex digits)')]) }), HUB_COMMANDS['token revoke']);
  const id = f.positionals[0];
  const found = await withStore(f, (s) => s.revokeToken(id, new Date().toISOString()));
  if (!found) {
    process.stderr.write(`synchub: no token with id ${id}\n`);
    return 1;
  }
  process.stdout.write(`revoked token ${id}\n`);
}

/** A count given on the command line as text: a whole number >= 0. */
const countFlag = z
  .string()
  .regex(/^\d+$/, 'must be a whole number >= 0')
  .transform(Number)
  .pipe(z.number().int().nonnegative().safe());

async function compact(argv: string[]): Promise<void> {
  const f = parseCommand(
    argv,
    { project: { type: 'string' }, 'keep-events': { type: 'string' }, ...storeFlags },
    z.object({ project: projectArg, 'keep-events': countFlag, ...storeSchema, positionals: z.tuple([]) }),
    HUB_COMMANDS.compact,
  );
  const r = await withStore(f, async (s) => {
    if (!s.compact) throw new SyncError('unsupported', 'compaction is not available on this store');
    if (!(await s.projectExists(f.project))) throw new SyncError('unknown_project', `project ${f.project} does not exist`);
    return s.compact(f.project, f['keep-events']);
  });
  process.stdout.write(`compacted ${f.project}: dropped ${r.dropped} events, the log now starts after seq ${r.baseSeq}\n`);
}

async function backup(argv: string[]): Promise<void> {
  const f = parseCommand(argv, { to: { type: 'string' }, ...storeFlags }, z.object({ to: z.string().min(1), ...storeSchema, positionals: z.tuple([]) }), HUB_COMMANDS.backup);
  await withStore(f, async (s) => {
    if (!s.backup) throw new SyncError('unsupported', "hub backup is not available on this store (use the database's own backup tools)");
    await s.backup(f.to);
  });
  process.stdout.write(`backed up to ${f.to}\n`);
}
