// Prometheus metrics of one hub, on its own registry (several hubs can share a process in tests).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'synchub_' });
  const registers = [registry];
  return {
    registry,
    connections: new Gauge({ name: 'synchub_connections', help: 'Open device connections', registers }),
    pushes: new Counter({ name: 'synchub_pushes_total', help: 'Push frames received', registers }),
    eventsCommitted: new Counter({ name: 'synchub_events_committed_total', help: 'Events stored with a new seq', registers }),
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
  };
}
export type HubMetrics = ReturnType<typeof createMetrics>;
