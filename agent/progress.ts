// Progress of a long catch-up (events pulled from the hub) or push (pending outbox rows), fed by the
// events the Agent emits: a line rewritten in place when stderr is a terminal, a structured log
// line every few seconds when it is not. Short bursts (live sync) print nothing.
import type { Logger } from '../shared/log.ts';
import type { AgentEvents, AgentStatus } from './agent.ts';

export interface ProgressSource {
  on<K extends keyof AgentEvents>(event: K, listener: (...args: AgentEvents[K]) => void): unknown;
  off<K extends keyof AgentEvents>(event: K, listener: (...args: AgentEvents[K]) => void): unknown;
}

export interface ProgressOptions {
  /** Rewrite one line on a terminal (true) or log structured lines (false). */
  tty: boolean;
  /** The terminal line's sink (stderr). */
  write: (text: string) => void;
  log: Logger;
  /** Work below this many events is not worth a progress report. */
  minEvents?: number;
  /** How often a report is made: the terminal line (default 250 ms) or the log line (default 5 s). */
  intervalMs?: number;
}

export const TaskKind = { CatchUp: 'catch-up', Push: 'push' } as const;
export type TaskKind = (typeof TaskKind)[keyof typeof TaskKind];

/** One piece of work with a known size: done/total, rate since it began, ETA. */
export interface TaskProgress {
  task: TaskKind;
  done: number;
  total: number;
  /** Events per second since the task began. */
  rate: number;
  /** Seconds left at that rate; null until there is a rate. */
  etaSeconds: number | null;
}

interface Task {
  start: number;
  startedAt: number;
  done: number;
  total: number;
}

/** `catch-up 12,000/40,000 events (30%)  8,200 ev/s  ETA 3 s` */
export function formatProgress(p: TaskProgress): string {
  const pct = p.total ? Math.floor((p.done / p.total) * 100) : 100;
  const eta = p.etaSeconds === null ? 'ETA ?' : `ETA ${formatSeconds(p.etaSeconds)}`;
  return `${p.task} ${p.done.toLocaleString('en-US')}/${p.total.toLocaleString('en-US')} events (${pct}%)  ${Math.round(p.rate).toLocaleString('en-US')} ev/s  ${eta}`;
}

function formatSeconds(s: number): string {
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export class ProgressReporter {
  private catchUp: Task | null = null;
  private push: Task | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The terminal line is showing and must be cleared before anything else is printed. */
  private lineShown = false;
  private readonly minEvents: number;
  private readonly intervalMs: number;
  private readonly listeners: { [K in 'status' | 'applied' | 'acked']: (...args: AgentEvents[K]) => void };

  constructor(
    private readonly agent: ProgressSource,
    private readonly o: ProgressOptions,
  ) {
    this.minEvents = o.minEvents ?? 1000;
    this.intervalMs = o.intervalMs ?? (o.tty ? 250 : 5000);
    this.listeners = {
      status: (s) => this.onStatus(s),
      applied: (r) => this.advance(TaskKind.CatchUp, r.cursor, true),
      acked: (a) => this.advance(TaskKind.Push, a.acks + a.duplicates + a.rejected, false),
    };
    agent.on('status', this.listeners.status);
    agent.on('applied', this.listeners.applied);
    agent.on('acked', this.listeners.acked);
  }

  /** Reports of the tasks under way (for the tests and the log). */
  current(): TaskProgress[] {
    const now = performance.now();
    const out: TaskProgress[] = [];
    for (const [task, t] of [[TaskKind.CatchUp, this.catchUp], [TaskKind.Push, this.push]] as const) {
      if (!t) continue;
      const seconds = (now - t.startedAt) / 1000;
      const rate = seconds > 0 ? t.done / seconds : 0;
      out.push({ task, done: t.done, total: t.total, rate, etaSeconds: rate > 0 ? (t.total - t.done) / rate : null });
    }
    return out;
  }

  stop(): void {
    this.agent.off('status', this.listeners.status);
    this.agent.off('applied', this.listeners.applied);
    this.agent.off('acked', this.listeners.acked);
    this.stopTimer();
    this.clearLine();
  }

  /**
   * At each welcome (and now and then otherwise) the agent reports its cursor, the hub's head and
   * its pending rows: the sizes of the work ahead. A task is begun when there is enough of it.
   */
  private onStatus(s: AgentStatus): void {
    if (s.state !== 'open') {
      // Pushes in flight are re-sent after a reconnect (their acks would count twice): begin again then.
      this.push = null;
      return;
    }
    const behind = s.headSeq === null ? 0 : s.headSeq - s.cursor;
    if (!this.catchUp && behind >= this.minEvents) this.catchUp = { start: s.cursor, startedAt: performance.now(), done: 0, total: behind };
    if (this.catchUp && s.headSeq !== null) this.catchUp.total = Math.max(this.catchUp.total, s.headSeq - this.catchUp.start);
    if (!this.push && s.pending >= this.minEvents) this.push = { start: 0, startedAt: performance.now(), done: 0, total: s.pending };
    if (this.catchUp || this.push) this.startTimer();
  }

  /** Catch-up moves to an absolute cursor; a push counts rows settled by each ack. */
  private advance(kind: TaskKind, value: number, absolute: boolean): void {
    const t = kind === TaskKind.CatchUp ? this.catchUp : this.push;
    if (!t) return;
    t.done = absolute ? value - t.start : t.done + value;
    // Live events that arrive during a catch-up, or rows written during a push, enlarge the task.
    if (t.done > t.total) t.total = t.done;
    if (t.done >= t.total) this.finish(kind, t);
  }

  private finish(kind: TaskKind, t: Task): void {
    const seconds = (performance.now() - t.startedAt) / 1000;
    if (kind === TaskKind.CatchUp) this.catchUp = null;
    else this.push = null;
    const rate = seconds > 0 ? Math.round(t.done / seconds) : t.done;
    this.clearLine();
    const summary = { task: kind, done: t.done, total: t.total, seconds: Math.round(seconds * 10) / 10, rate };
    if (this.o.tty) this.o.write(`${kind} done: ${t.done.toLocaleString('en-US')} events in ${summary.seconds} s (${rate.toLocaleString('en-US')} ev/s)\n`);
    else this.o.log.info(summary, `${kind} done`);
    if (!this.catchUp && !this.push) this.stopTimer();
  }

  private report(): void {
    const tasks = this.current();
    if (tasks.length === 0) return;
    if (this.o.tty) {
      this.o.write(`\r\x1b[K${tasks.map(formatProgress).join('   ')}`);
      this.lineShown = true;
    } else {
      for (const p of tasks) this.o.log.info({ ...p, rate: Math.round(p.rate), etaSeconds: p.etaSeconds === null ? null : Math.ceil(p.etaSeconds) }, `${p.task} progress`);
    }
  }

  private clearLine(): void {
    if (!this.lineShown) return;
    this.o.write('\r\x1b[K');
    this.lineShown = false;
  }

  private startTimer(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.report(), this.intervalMs);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
