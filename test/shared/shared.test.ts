// shared/: timestamp reading, td's vocabulary, frame parsing and CLI validation.
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { chainDigest, EMPTY_DIGEST } from '../../shared/digest.ts';
import { envName, HelpRequested, parseCommand, portFlag, UsageError } from '../../shared/cli.ts';
import { ClientFrame, parseFrame } from '../../shared/protocol.ts';
import { entityTable, mapActionType } from '../../shared/td-actions.ts';
import { toIso } from '../../shared/time.ts';
import { prettyLine } from '../../shared/log.ts';

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
  const schema = z.object({ port: portFlag.default(8787), 'admin-port': portFlag.optional(), json: z.boolean().optional(), positionals: z.tuple([z.string()]) });
  const options = { port: { type: 'string' }, 'admin-port': { type: 'string' }, json: { type: 'boolean' } } as const;
  const help = { usage: 'synchub x <name> [--port N]', summary: 'Does x.', example: 'synchub x a --port 1' };
  const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseCommand(argv, options, schema, help, env);

  it('validates flags and positionals into typed values', () => {
    expect(parse(['--port', '9000', 'x'])).toEqual({ port: 9000, positionals: ['x'] });
    expect(parse(['x']).port).toBe(8787);
  });
  it('turns bad input into one-line usage errors naming the flag', () => {
    expect(() => parse(['--port', 'abc', 'x'])).toThrow(new UsageError('--port: must be a number'));
    expect(() => parse(['--port', '70000', 'x'])).toThrow(UsageError);
    expect(() => parse(['--nope', 'x'])).toThrow(/Unknown option '--nope'/);
    expect(() => parse([])).toThrow(/^argument/);
  });
  it('reads a flag not given from its SYNCHUB_ variable, in upper snake case', () => {
    expect(envName('admin-port')).toBe('SYNCHUB_ADMIN_PORT');
    expect(parse(['x'], { SYNCHUB_PORT: '9100', SYNCHUB_ADMIN_PORT: '0', SYNCHUB_JSON: 'true' })).toEqual({ port: 9100, 'admin-port': 0, json: true, positionals: ['x'] });
    expect(parse(['x'], { SYNCHUB_JSON: '0' }).json).toBe(false);
  });
  it('lets a flag beat its variable', () => {
    expect(parse(['--port', '9000', 'x'], { SYNCHUB_PORT: '9100' }).port).toBe(9000);
    // Even a bad variable does not matter when the flag is given.
    expect(parse(['--port', '9000', 'x'], { SYNCHUB_PORT: 'notaport' }).port).toBe(9000);
  });
  it('refuses a bad variable as it refuses a bad flag, naming the variable', () => {
    expect(() => parse(['x'], { SYNCHUB_PORT: 'notaport' })).toThrow(new UsageError('SYNCHUB_PORT: must be a number'));
    expect(() => parse(['x'], { SYNCHUB_ADMIN_PORT: '99999' })).toThrow(/^SYNCHUB_ADMIN_PORT: /);
    expect(() => parse(['x'], { SYNCHUB_JSON: 'maybe' })).toThrow(/^SYNCHUB_JSON: expected true or false/);
  });
  it('answers --help with the usage and an example, before validating anything', () => {
    for (const argv of [['--help'], ['x', '-h'], ['--port', 'abc', '--help']]) {
      try {
        parse(argv);
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(HelpRequested);
        expect((err as Error).message).toMatch(/^usage: synchub x <name>/);
        expect((err as Error).message).toMatch(/example:\n  synchub x a --port 1\n$/);
      }
    }
  });
});

describe('prettyLine', () => {
  it('turns a pino JSON line into time, level, message and the other fields', () => {
    const time = new Date(2026, 0, 2, 13, 4, 5).getTime();
    const line = prettyLine(JSON.stringify({ level: 40, time, pid: 7, name: 'synchub-hub', msg: 'closing connection', project: 'p1', code: 'slow_consumer', message: 'nothing read' }));
    expect(line).toBe('13:04:05 WARN  closing connection  project=p1 code=slow_consumer message="nothing read"\n');
    expect(prettyLine(JSON.stringify({ level: 30, time, msg: 'hub stopped' }))).toBe('13:04:05 INFO  hub stopped\n');
    expect(prettyLine('not json')).toBe('not json\n');
  });
});

describe('chainDigest', () => {
  it('is sha256 of the previous digest then the event text, as stored digests were computed (any text)', () => {
    const texts = ['{"serverSeq":1}', 'ünïcödé ✓ 𝄞 emoji 😀', 'lone \ud800 surrogate', ''];
    let previous = EMPTY_DIGEST;
    for (const text of texts) {
      const expected = createHash('sha256').update(previous).update(text).digest('hex');
      expect(chainDigest(previous, text)).toBe(expected);
      previous = expected;
    }
    // A fixed value: a change of algorithm would break every digest already stored.
    expect(chainDigest('', 'synchub')).toBe(createHash('sha256').update('synchub').digest('hex'));
    expect(chainDigest('', 'synchub')).toBe('ab215c85533611210cafd3c6c2dcb649ed032aaddd92e0aab228c3f8d994c830');
  });
});
