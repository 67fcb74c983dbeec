// How td's action_log vocabulary maps onto sync events: one declarative table each,
// the same mapping td's sync package uses (internal/sync/client.go, v0.30.0).
import type { ActionType } from './event.ts';

/** td action names that are not themselves sync action types. Anything unlisted and not a sync type is an update. */
const TD_ACTIONS: Readonly<Record<string, ActionType>> = {
  create: 'create',
  handoff: 'create',
  add_dependency: 'create',
  link_file: 'create',
  board_create: 'create',
  board_update: 'create',
  board_add_issue: 'create',
  board_set_position: 'create',
  work_session_tag: 'create',

  remove_dependency: 'delete',
  unlink_file: 'delete',
  board_delete: 'delete',
  work_session_untag: 'delete',
  // synchub's own name for a hard delete (written by `agent init` triggers).
  hard_delete: 'delete',

  // td's own `delete` is a soft delete (issues keep a deleted_at).
  delete: 'soft_delete',
  soft_delete: 'soft_delete',
  board_unposition: 'soft_delete',
  board_remove_issue: 'soft_delete',

  restore: 'restore',
};

/** Map an action_log action_type (td's name or a sync name) to the sync action type. */
export function mapActionType(action: string): ActionType {
  // Own keys only: `constructor` or `toString` would otherwise find Object.prototype's functions.
  return Object.hasOwn(TD_ACTIONS, action) ? TD_ACTIONS[action]! : 'update';
}

/** td's entity names (singular and plural) and the table each lives in. */
const TD_ENTITY_TABLES: Readonly<Record<string, string>> = {
  issue: 'issues',
  handoff: 'handoffs',
  board: 'boards',
  log: 'logs',
  comment: 'comments',
  work_session: 'work_sessions',
  board_position: 'board_issue_positions',
  dependency: 'issue_dependencies',
  file_link: 'issue_files',
  work_session_issue: 'work_session_issues',
  note: 'notes',
};

/** Map an action_log entity_type to a table name: td aliases first, otherwise the name itself. */
export function entityTable(entityType: string): string {
  // Own keys only (found by the fuzz suite: an entity type `constructor` mapped to a function).
  return Object.hasOwn(TD_ENTITY_TABLES, entityType) ? TD_ENTITY_TABLES[entityType]! : entityType;
}
