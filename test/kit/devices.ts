// Test kit: devices = an app DB + an app writer on its own connection + an agent
// (in-process, or the real `synchub agent run` as a child process), and checks of
// convergence against the hub's log.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, type AgentOptions } from '../../agent/agent.ts';
import { getSyncState, openAppDb, type Db } from '../../agent/app-db.ts';
import { readStatus } from '../../agent/status.ts';
import { SyncError } from '../../shared/errors.ts';
import { EventSchema, type SyncEvent } from '../../shared/event.ts';
import type { EventStore } from '../../hub/store/event-store.ts';
import { APP_TABLES, AppWriter, dumpTables, makeAppDb, replayInto } from './app-db.ts';
import { CLI_PATH, REPO_ROOT } from './hub.ts';
import { eventually } from './ws-client.ts';

export interface HubRef {
  url: string;
  project: string;
  token: string;
  /** What the checks read of the hub's store. */
  store: HubReads;
}

export type HubReads = Pick<EventStore, 'headSeq' | 'readAfter'>;

/** Agent timings for tests: quick reconnects, quick dead-link detection. */
export const FAST_AGENT: Partial<AgentOptions> = { backoffBaseMs: 20, backoffCapMs: 300, pingIntervalMs: 1000 };

export class Device {
  readonly writer: AppWriter;
  agent: Agent | null = null;
  private reader: Db;

  constructor(
    readonly name: string,
    readonly path: string,
    private readonly hub: HubRef,
    private readonly agentOptions: Partial<AgentOptions> = {},
  ) {
    this.writer = new AppWriter(path, `ses-${name}`);
    this.reader = openAppDb(path);
  }

  /** Start (or restart) the in-process agent; resolves once it syncs (it waits out a locked database). */
  async start(): Promise<Agent> {
    if (this.agent) throw new Error(`${this.name}: agent already running`);
    const agent = new Agent({ db: this.path, hub: this.hub.url, project: this.hub.project, token: this.hub.token, tables: APP_TABLES, ...FAST_AGENT, ...this.agentOptions });
    this.agent = agent;
    await agent.start();
    return agent;
  }

  async stop(): Promise<void> {
    const a = this.agent;
    this.agent = null;
    await a?.stop();
  }

  tables(): Record<string, Record<string, unknown>[]> {
    return dumpTables(this.reader);
  }

  status() {
    return readStatus(this.reader);
  }

  /** Status, or null while no agent has prepared the database yet (a daemon still starting). */
  statusIfReady(): ReturnType<typeof readStatus> | null {
    try {
      return readStatus(this.reader);
    } catch (err) {
      if (err instanceof SyncError && err.code === 'not_initialized') return null;
      throw err;
    }
  }

  /** action_log rows the app wrote (not undone), with the session id they are pushed under. */
  loggedRows(): { rowid: number; session_id: string }[] {
    const fallback = getSyncState(this.reader).sessionId;
    return this.reader
      .prepare("SELECT rowid, COALESCE(NULLIF(session_id, ''), ?) AS session_id FROM action_log WHERE undone = 0 ORDER BY rowid")
      .all(fallback) as { rowid: number; session_id: string }[];
  }

  async close(): Promise<void> {
    await this.stop();
    this.writer.close();
    this.reader.close();
  }
}

/** Make `n` devices with fresh app DBs in `dir`. */
export function makeDevices(dir: string, hub: HubRef, names: string[], opts: Partial<AgentOptions> = {}): Device[] {
  return names.map((name) => {
    const path = join(dir, `${name}.db`);
    makeAppDb(path);
    return new Device(name, path, hub, opts);
  });
}

/** The whole hub log of a project, in seq order, each event schema-checked. */
export async function hubLog(store: HubReads, project: string): Promise<SyncEvent[]> {
  const out: SyncEvent[] = [];
  for (;;) {
    const page = await store.readAfter(project, out.length ? out[out.length - 1]!.serverSeq : 0, 5000);
    if (page.length === 0) return out;
    for (const e of page) out.push(EventSchema.parse(JSON.parse(e.json)));
  }
}

/** Wait until every device has pushed everything and applied through the hub's head. */
export async function quiesce(hub: HubRef, devices: Device[], timeoutMs = 30_000): Promise<number> {
  let head = 0;
  await eventually(
    async () => {
      head = await hub.store.headSeq(hub.project);
      return devices.every((d) => {
        const s = d.statusIfReady();
        return s !== null && s.pending === 0 && s.cursor === head;
      }) && head === (await hub.store.headSeq(hub.project));
    },
    'devices to quiesce',
    timeoutMs,
    20,
  );
  return head;
}

/**
 * Check the sync promises at quiescence: each device equals a fresh DB built by
 * replaying the hub log; every logged local change is in the log exactly once.
 */
export async function checkConverged(hub: HubRef, devices: Device[], scratchDir: string): Promise<SyncEvent[]> {
  const log = await hubLog(hub.store, hub.project);
  log.forEach((e, i) => {
    if (e.serverSeq !== i + 1) throw new Error(`hub log has a gap or repeat at position ${i}: seq ${e.serverSeq}`);
  });
  const replay = replayInto(join(scratchDir, `replay-${Date.now()}-${Math.random().toString(36).slice(2)}.db`), log);
  const expected = dumpTables(replay);
  replay.close();
  const byKey = new Map<string, number>();
  for (const e of log) {
    const k = `${e.deviceId}|${e.sessionId}|${e.clientActionId}`;
    byKey.set(k, (byKey.get(k) ?? 0) + 1);
  }
  for (const d of devices) {
    const actual = d.tables();
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      throw new Error(`${d.name} differs from replay of the hub log:\n${firstDifference(expected, actual)}`);
    }
    const deviceId = d.status().deviceId;
    for (const r of d.loggedRows()) {
      const n = byKey.get(`${deviceId}|${r.session_id}|${r.rowid}`) ?? 0;
      if (n !== 1) throw new Error(`${d.name}: action_log row ${r.rowid} is in the hub log ${n} times`);
    }
  }
  return log;
}

function firstDifference(expected: Record<string, Record<string, unknown>[]>, actual: Record<string, Record<string, unknown>[]>): string {
  for (const table of Object.keys(expected)) {
    const e = new Map(expected[table]!.map((r) => [r.id, JSON.stringify(r)]));
    const a = new Map(actual[table]!.map((r) => [r.id, JSON.stringify(r)]));
    for (const id of new Set([...e.keys(), ...a.keys()])) {
      if (e.get(id) !== a.get(id)) return `${table} ${String(id)}: replay=${e.get(id) ?? 'missing'} device=${a.get(id) ?? 'missing'}`;
    }
  }
  return '(no row differs; order or columns differ)';
}

/** The real `synchub agent run` as a child process (token through a file, never argv). */
export function spawnAgent(
  dir: string,
  dbPath: string,
  hub: HubRef,
  extraEnv: NodeJS.ProcessEnv = {},
  extraArgs: string[] = [],
): { proc: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const tokenFile = join(dir, 'agent.token');
  writeFileSync(tokenFile, hub.token);
  const proc = spawn(
    process.execPath,
    [CLI_PATH, 'agent', 'run', '--db', dbPath, '--hub', hub.url, '--project', hub.project, '--tables', APP_TABLES.join(','), '--token-file', tokenFile, ...extraArgs],
    { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SYNCHUB_LOG_LEVEL: 'warn', ...extraEnv } },
  );
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, exited, stderr: () => err };
}
