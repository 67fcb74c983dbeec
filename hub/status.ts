// What the admin listener's /api/status and dashboard show: per project the head seq, events/s
// and every connected device. Counters are read from the hub's Prometheus registry and live
// figures from the same function the per-project gauges use, so the page matches /metrics.
import type { HubMetrics, ProjectFigures } from './metrics.ts';
import { valuesByLabel } from './metrics.ts';

export interface DeviceStatus {
  deviceId: string;
  /** Last seq the hub has sent to this device. */
  cursor: number;
  /** Events committed that this device has not been sent yet (headSeq - cursor). */
  lag: number;
  /** Remote address and port of the socket. */
  address: string;
  connectedSince: string;
  /** Bytes queued in the hub for this socket, not yet handed to the kernel. */
  bytesBuffered: number;
}

export interface ProjectStatus {
  project: string;
  headSeq: number;
  /** Events committed per second, averaged over the last RATE_WINDOW samples. */
  eventsPerSecond: number;
  devices: DeviceStatus[];
}

export interface RecentError {
  at: string;
  code: string;
  project: string;
  deviceId: string;
  message: string;
}

export interface HubStatus {
  hub: { version: string; startedAt: string; uptimeSeconds: number; ready: boolean; notReadyReason: string | null; connections: number };
  totals: { eventsCommitted: number; eventsRejected: number; pushes: number; framesSent: number; slowConsumers: number; errors: Record<string, number> };
  projects: ProjectStatus[];
  /** Events/s per sample interval, oldest first, per project: the dashboard's chart. */
  rates: { intervalMs: number; series: Record<string, number[]> };
  recentErrors: RecentError[];
}

/** Samples kept for the chart (5 minutes at the default 1 s). */
const RATE_SAMPLES = 300;
/** eventsPerSecond averages this many samples, so one bursty second does not swing it. */
const RATE_WINDOW = 5;
/** Connection errors kept for the dashboard. */
const RECENT_ERRORS = 50;

export interface StatusSource {
  version: string;
  metrics: HubMetrics;
  /** Per project, the live figures the gauges report. */
  figures: () => Promise<ProjectFigures[]>;
  /** Every connected, streaming device, by project. */
  devices: () => Map<string, DeviceStatus[]>;
  connections: () => number;
  readiness: () => Promise<{ ready: boolean; reason: string | null }>;
}

export class StatusBoard {
  private readonly startedAt = new Date();
  private readonly series = new Map<string, number[]>();
  private last: Map<string, number> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly errors: RecentError[] = [];

  constructor(
    private readonly source: StatusSource,
    private readonly intervalMs: number,
  ) {}

  /** Begin sampling events/s (idempotent). Only the admin listener needs it. */
  start(): void {
    if (this.timer) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A connection was closed with an error frame. */
  recordError(e: Omit<RecentError, 'at'>): void {
    this.errors.push({ at: new Date().toISOString(), ...e });
    if (this.errors.length > RECENT_ERRORS) this.errors.shift();
  }

  private async sample(): Promise<void> {
    const now = await valuesByLabel(this.source.metrics.projectEventsCommitted);
    if (this.last) {
      const seconds = this.intervalMs / 1000;
      for (const project of new Set([...now.keys(), ...this.series.keys()])) {
        const points = this.series.get(project) ?? [];
        points.push(((now.get(project) ?? 0) - (this.last.get(project) ?? 0)) / seconds);
        if (points.length > RATE_SAMPLES) points.shift();
        this.series.set(project, points);
      }
    }
    this.last = now;
  }

  async status(): Promise<HubStatus> {
    const m = this.source.metrics;
    const [figures, readiness, committed, rejected, pushes, frames, slow, errors] = await Promise.all([
      this.source.figures(),
      this.source.readiness(),
      valuesByLabel(m.eventsCommitted),
      valuesByLabel(m.rejected),
      valuesByLabel(m.pushes),
      valuesByLabel(m.framesSent),
      valuesByLabel(m.slowConsumers),
      valuesByLabel(m.errors),
    ]);
    const devices = this.source.devices();
    const rate = (project: string) => {
      const points = this.series.get(project)?.slice(-RATE_WINDOW) ?? [];
      return points.length ? Math.round((points.reduce((a, b) => a + b, 0) / points.length) * 10) / 10 : 0;
    };
    return {
      hub: {
        version: this.source.version,
        startedAt: this.startedAt.toISOString(),
        uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
        ready: readiness.ready,
        notReadyReason: readiness.reason,
        connections: this.source.connections(),
      },
      totals: {
        eventsCommitted: committed.get('') ?? 0,
        eventsRejected: rejected.get('') ?? 0,
        pushes: pushes.get('') ?? 0,
        framesSent: frames.get('') ?? 0,
        slowConsumers: slow.get('') ?? 0,
        errors: Object.fromEntries(errors),
      },
      projects: figures.map((f) => ({
        project: f.project,
        headSeq: f.headSeq,
        eventsPerSecond: rate(f.project),
        devices: devices.get(f.project) ?? [],
      })),
      rates: { intervalMs: this.intervalMs, series: Object.fromEntries(this.series) },
      recentErrors: [...this.errors].reverse(),
    };
  }
}
