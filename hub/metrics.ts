// Prometheus metrics of one hub, on its own registry (several hubs can share a process in tests).
// The admin listener's /api/status and dashboard read these same counters and the same live
// figures (see status.ts), so the page and a Prometheus scrape never disagree.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What the hub knows right now about one project, computed on demand (at a scrape or a status request). */
export interface ProjectFigures {
  project: string;
  headSeq: number;
  devices: number;
  /** Events the furthest-behind connected device has not been sent yet. */
  maxLagEvents: number;
  /** Bytes queued in the hub for this project's sockets, not yet handed to the kernel. */
  bytesBuffered: number;
}

export function createMetrics(live: () => Promise<ProjectFigures[]> = async () => []) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'synchub_' });
  const registers = [registry];
  /** A per-project gauge filled from the live figures at each scrape. */
  const projectGauge = (name: string, help: string, pick: (f: ProjectFigures) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['project'],
      registers,
      async collect() {
        const figures = await live();
        this.reset();
        for (const f of figures) this.set({ project: f.project }, pick(f));
      },
    });
  return {
    registry,
    connections: new Gauge({ name: 'synchub_connections', help: 'Open device connections', registers }),
    pushes: new Counter({ name: 'synchub_pushes_total', help: 'Push frames received', registers }),
    eventsCommitted: new Counter({ name: 'synchub_events_committed_total', help: 'Events stored with a new seq', registers }),
    projectEventsCommitted: new Counter({
      name: 'synchub_project_events_committed_total',
      help: 'Events stored with a new seq, by project (events/s on the dashboard is its rate)',
      labelNames: ['project'],
      registers,
    }),
    rejected: new Counter({ name: 'synchub_events_rejected_total', help: 'Events rejected (duplicates included)', registers }),
    commits: new Histogram({
      name: 'synchub_commit_seconds',
      help: 'Duration of one group commit (transaction + fsync)',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers,
    }),
    framesSent: new Counter({ name: 'synchub_frames_sent_total', help: 'Frames sent to devices', registers }),
    backlogReads: new Counter({ name: 'synchub_backlog_reads_total', help: 'Pages read from the store for readers behind the in-memory tail', registers }),
    backlogFrameBytes: new Histogram({
      name: 'synchub_backlog_frame_bytes',
      help: "Size of events frames read from the store, sized to each reader's measured read rate",
      buckets: [8192, 16384, 65536, 262144, 1048576, 4194304],
      registers,
    }),
    slowConsumers: new Counter({ name: 'synchub_slow_consumers_total', help: 'Connections closed for reading nothing for stallTimeoutMs', registers }),
    errors: new Counter({ name: 'synchub_connection_errors_total', help: 'Connections closed with an error frame, by code', labelNames: ['code'], registers }),
    rateLimited: new Counter({ name: 'synchub_rate_limited_total', help: 'Times a connection went over maxEventsPerSecond (reading paused, or closed as rate_limited)', registers }),
    authFailures: new Counter({ name: 'synchub_auth_failures_total', help: 'Refused upgrades, by HTTP status', labelNames: ['status'], registers }),
    projectHead: projectGauge('synchub_project_head_seq', 'Last committed seq, by project', (f) => f.headSeq),
    projectDevices: projectGauge('synchub_project_devices', 'Connected devices streaming, by project', (f) => f.devices),
    projectMaxLag: projectGauge('synchub_project_max_lag_events', 'Events not yet sent to the furthest-behind connected device, by project', (f) => f.maxLagEvents),
    projectBuffered: projectGauge('synchub_project_buffered_bytes', "Bytes queued in the hub for a project's sockets", (f) => f.bytesBuffered),
  };
}
export type HubMetrics = ReturnType<typeof createMetrics>;

/** The values of a counter or gauge by its first label's value (or '' without labels). */
export async function valuesByLabel(metric: Counter<string> | Gauge<string>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const v of (await metric.get()).values) {
    const label = Object.values(v.labels)[0];
    out.set(label === undefined ? '' : String(label), (out.get(String(label ?? '')) ?? 0) + v.value);
  }
  return out;
}
