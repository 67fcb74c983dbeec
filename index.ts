// The library entry (`import { Agent } from 'synchub'`): the agent to embed in an app, and the
// hub with its SQLite store for those who run one in-process (tests, a demo, a desktop app).
export { Agent, AgentOptionsSchema, type AgentOptions, type AgentStatus, type AgentEvents } from './agent/agent.ts';
export { Hub } from './hub/server.ts';
export { HubOptionsSchema, type HubOptions, type HubOptionsInput } from './hub/config.ts';
export { SqliteEventStore } from './hub/store/sqlite.ts';
export type { EventStore } from './hub/store/event-store.ts';
export { createToken } from './hub/tokens.ts';
export type { HubStatus, ProjectStatus, DeviceStatus } from './hub/status.ts';
export type { SyncEvent } from './shared/event.ts';
export { SyncError } from './shared/errors.ts';
export { VERSION } from './shared/version.ts';
