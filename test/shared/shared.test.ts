// shared/: timestamp reading, td's vocabulary, frame parsing and CLI validation.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseCommand, portFlag, UsageError } from '../../shared/cli.ts';
import { ClientFrame, parseFrame } from '../../shared/protocol.ts';
import { entityTable, mapActionType } from '../../shared/td-actions.ts';
import { toIso } from '../../shared/time.ts';

describe('toIso', () => {
  it.each([
    ['2026-01-02T03:04:05.123Z', '2026-01-02T03:04:05.123Z'],
    ['2026-01-02T05:04:05+02:00', '2026-01-02T03:04:05.000Z'],
    ['2026-01-02 03:04:05', '2026-01-02T03:04:05.000Z'], // SQLite CURRENT_TIMESTAMP is UTC
    ['2026-01-02 03:04:05.123456789 +0000 UTC', '2026-01-02T03:04:05.123Z'], // Go time.String()
    ['2026-01-02 04:04:05.5 +0100 CET m=+0.001234', '2026-01-02T03:04:05.500Z'], // with monotonic clock
  ])('reads %s', (input, expected) => {
    expect(toIso(input)).toBe(expected);
  });

  it.each(['', '   ', 'yesterday', '2026-13-45'])('returns null for %j', (input) => {
    expect(toIso(input)).toBeNull();
  });
});

describe('td vocabulary', () => {
  it('maps action names as td maps them', () => {
    expect(['create', 'handoff', 'add_dependency', 'link_file', 'board_create', 'board_update', 'board_add_issue', 'board_set_position', 'work_session_tag'].map(mapActionType)).toEqual(Array(9).fill('create'));
    expect(['remove_dependency', 'unlink_file', 'board_delete', 'work_session_untag', 'hard_delete'].map(mapActionType)).toEqual(Array(5).fill('delete'));
    expect(['delete', 'soft_delete', 'board_unposition', 'board_remove_issue'].map(mapActionType)).toEqual(Array(4).fill('soft_delete'));
    expect(mapActionType('restore')).toBe('restore');
    expect(['update', 'status_change', 'anything'].map(mapActionType)).toEqual(['update', 'update', 'update']);
  });

  it('maps singular aliases to tables and keeps other names', () => {
    expect(entityTable('issue')).toBe('issues');
    expect(entityTable('board_position')).toBe('board_issue_positions');
    expect(entityTable('dependency')).toBe('issue_dependencies');
    expect(entityTable('issues')).toBe('issues');
    expect(entityTable('notes_v2')).toBe('notes_v2');
  });
});

describe('parseFrame', () => {
  it('names the first problem with its path', () => {
    const r = parseFrame(ClientFrame, JSON.stringify({ type: 'push', batch: 1, events: [{ clientActionId: 'x' }] }));
    expect(r).toMatchObject({ ok: false, code: 'invalid_frame' });
    expect(!r.ok && r.message).toMatch(/^events\.0\.clientActionId: /);
    expect(parseFrame(ClientFrame, '{nope')).toMatchObject({ ok: false, code: 'bad_json' });
    expect(parseFrame(ClientFrame, JSON.stringify({ type: 'hello', protocol: 1, deviceId: 'd', afterSeq: 0 }))).toMatchObject({ ok: true });
  });
});

describe('parseCommand', () => {
  const schema = z.object({ port: portFlag.default(8787), positionals: z.tuple([z.string()]) });
  it('validates flags and positionals into typed values', () => {
    expect(parseCommand(['--port', '9000', 'x'], { port: { type: 'string' } }, schema)).toEqual({ port: 9000, positionals: ['x'] });
    expect(parseCommand(['x'], { port: { type: 'string' } }, schema).port).toBe(8787);
  });
  it('turns bad input into one-line usage errors', () => {
    expect(() => parseCommand(['--port', 'abc', 'x'], { port: { type: 'string' } }, schema)).toThrow(new UsageError('port: must be a number'));
    expect(() => parseCommand(['--port', '70000', 'x'], { port: { type: 'string' } }, schema)).toThrow(UsageError);
    expect(() => parseCommand(['--nope', 'x'], { port: { type: 'string' } }, schema)).toThrow(/Unknown option '--nope'/);
    expect(() => parseCommand([], { port: { type: 'string' } }, schema)).toThrow(/^argument/);
  });
});
