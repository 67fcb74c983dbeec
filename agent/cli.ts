// `synchub agent ...`: run the daemon, set up capture triggers, read status and conflicts.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseCommand, UsageError } from '../shared/cli.ts';
import { createLogger } from '../shared/log.ts';
import { PROJECT_NAME_RE } from '../shared/limits.ts';
import { Agent } from './agent.ts';
import { WriteQueueStopped } from './write-queue.ts';
import { openAppDb, openAppDbReadonly, ensureSyncSchema, syncedTables, type Db } from './app-db.ts';
import { readStatus, listConflicts } from './status.ts';
import { installTriggers } from './triggers.ts';

export const AGENT_USAGE = `  synchub agent init   --db <app.db> --tables <t1,t2,...>
  synchub agent run    --db <app.db> --hub <ws-url> --project <project> [--tables t1,t2] [--token-file FILE] [--no-snapshot]
                       (token from --token-file or the SYNCHUB_TOKEN environment variable)
  synchub agent status --db <app.db> [--json]
  synchub agent conflicts --db <app.db> [--json]`;

const tablesFlag = z
  .string()
  .transform((s) => s.split(',').map((t) => t.trim()).filter(Boolean))
  .pipe(z.array(z.string()).min(1, 'expected a comma-separated list of tables'));

export async function agentCli(argv: string[]): Promise<number | void> {
  const [cmd, ...rest] = argv;
  if (cmd === 'run') return run(rest);
  if (cmd === 'init') return init(rest);
  if (cmd === 'status') return status(rest);
  if (cmd === 'conflicts') return conflicts(rest);
  throw new UsageError(`unknown command: agent ${argv.join(' ')} (see: synchub help)`);
}

function readToken(file: string | undefined): string {
  let token: string | undefined;
  if (file !== undefined) {
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read --token-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else {
    token = process.env.SYNCHUB_TOKEN?.trim();
  }
  if (!token) throw new UsageError('no token: pass --token-file FILE or set SYNCHUB_TOKEN');
  return token;
}

/**
 * Hidden timing overrides for tests and chaos runs, as JSON in SYNCHUB_AGENT_TUNING, e.g.
 * '{"pingIntervalMs":1000,"backoffCapMs":1000}'. Not a public flag: the defaults are what a real
 * deployment wants; tests need seconds where production waits half a minute.
 */
const TuningSchema = z
  .object({
    pingIntervalMs: z.number().int().positive(),
    deadAfterMs: z.number().int().positive(),
    backoffBaseMs: z.number().int().positive(),
    backoffCapMs: z.number().int().positive(),
    heartbeatMs: z.number().int().positive(),
    lockReportAfterMs: z.number().int().positive(),
  })
  .partial()
  .strict();

function readTuning(): z.infer<typeof TuningSchema> {
  const text = process.env.SYNCHUB_AGENT_TUNING;
  if (text === undefined || text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError('SYNCHUB_AGENT_TUNING is not valid JSON');
  }
  const r = TuningSchema.safeParse(value);
  if (!r.success) throw new UsageError(`SYNCHUB_AGENT_TUNING: ${r.error.issues[0]?.path.join('.') || 'value'}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

async function run(argv: string[]): Promise<number> {
  const f = parseCommand(
    argv,
    { db: { type: 'string' }, hub: { type: 'string' }, project: { type: 'string' }, tables: { type: 'string' }, 'token-file': { type: 'string' }, 'no-snapshot': { type: 'boolean' } },
    z.object({
      db: z.string().min(1),
      hub: z.string().regex(/^wss?:\/\/\S+$/, 'expected a ws:// or wss:// URL'),
      project: z.string().regex(PROJECT_NAME_RE, 'invalid project name'),
      tables: tablesFlag.optional(),
      'token-file': z.string().optional(),
      'no-snapshot': z.boolean().optional(),
      positionals: z.tuple([]),
    }),
  );
  const token = readToken(f['token-file']);
  const tuning = readTuning();
  const log = createLogger('synchub-agent');
  const agent = new Agent({ db: f.db, hub: f.hub, project: f.project, token, tables: f.tables, snapshot: !f['no-snapshot'], ...tuning }, log);
  agent.on('problem', (p) => log.warn(p, 'sync problem'));
  // Runs until a signal, or until something only a person can fix (the database file gone or damaged).
  const ended = new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'signal received');
      agent.stop().then(
        () => resolve(0),
        (err) => {
          log.error({ err: String(err) }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    agent.once('fatal', (err) => {
      process.stderr.write(`synchub agent: ${err.message}\n`);
      resolve(1);
    });
  });
  try {
    // Waits while the app holds the database's write lock; throws only for a bad configuration.
    await agent.start();
  } catch (err) {
    if (err instanceof WriteQueueStopped) return ended; // a signal arrived while starting
    await agent.stop();
    throw err;
  }
  return ended;
}

async function init(argv: string[]): Promise<void> {
  const f = parseCommand(argv, { db: { type: 'string' }, tables: { type: 'string' } }, z.object({ db: z.string().min(1), tables: tablesFlag, positionals: z.tuple([]) }));
  const db = openAppDb(f.db);
  try {
    db.transaction(() => {
      ensureSyncSchema(db);
      const tables = syncedTables(db, f.tables);
      installTriggers(db, tables);
    }).immediate();
  } finally {
    db.close();
  }
  process.stdout.write(`capture triggers installed on ${f.tables.join(', ')} in ${f.db}\n`);
}

/** Open read-only, alongside a running daemon; a missing file is an error, not a new DB. */
function openExisting(path: string): Db {
  try {
    return openAppDbReadonly(path);
  } catch (err) {
    throw new UsageError(`cannot open ${path}: ${(err as Error).message}`);
  }
}

async function status(argv: string[]): Promise<void> {
  const f = parseCommand(argv, { db: { type: 'string' }, json: { type: 'boolean' } }, z.object({ db: z.string().min(1), json: z.boolean().optional(), positionals: z.tuple([]) }));
  const db = openExisting(f.db);
  try {
    const s = readStatus(db);
    if (f.json) process.stdout.write(`${JSON.stringify(s)}\n`);
    else {
      const { waitingForLock, lastResync, ...rest } = s;
      for (const [k, v] of Object.entries(rest)) process.stdout.write(`${k.padEnd(15)} ${v ?? '-'}\n`);
      const wait = waitingForLock ? `for ${Math.round(waitingForLock.sinceMs / 1000)} s (another connection, the app, holds the database's write lock; sync is paused)` : '-';
      process.stdout.write(`${'waitingForLock'.padEnd(15)} ${wait}\n`);
      process.stdout.write(`${'lastResync'.padEnd(15)} ${lastResync ? `${lastResync.at} (${lastResync.reason})` : '-'}\n`);
    }
  } finally {
    db.close();
  }
}

async function conflicts(argv: string[]): Promise<void> {
  const f = parseCommand(argv, { db: { type: 'string' }, json: { type: 'boolean' } }, z.object({ db: z.string().min(1), json: z.boolean().optional(), positionals: z.tuple([]) }));
  const db = openExisting(f.db);
  try {
    const rows = listConflicts(db);
    if (f.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
    else if (rows.length === 0) process.stdout.write('no conflicts\n');
    else for (const c of rows) process.stdout.write(`${JSON.stringify(c)}\n`);
  } finally {
    db.close();
  }
}
