// Fuzz kit: a seeded generator of hostile clients. Each call to `nextScript()` yields one hostile
// socket's whole life: how it upgrades (token, project in the URL), whether it says hello, the
// frames it sends in order, and what the hub must answer. fuzz.ts plays the scripts and checks the
// answers. Same seed, same scripts.
//
// What "bad" means, per kind of input (the expected answer is part of each script):
//   - upgrade with no / malformed / unknown token          -> HTTP 401
//   - upgrade with a token of another project, or for a project that is not the token's -> HTTP 403
//   - a path that is not /v1/projects/<name>/sync (tricks in the project segment) -> HTTP 404 (403 if the
//     trick still decodes to a well-formed project name)
//   - a protocol violation (random bytes, binary frame, truncated/deep JSON, wrong types, numbers past
//     2^53, NaN-like strings, unknown type, second hello, push before hello, huge frame, too many
//     events, push with a read token, hello under a device id bound to another token, a future cursor,
//     a socket that says nothing) -> an `error` frame with the one code that fits (then a close);
//     invalid UTF-8 in a text frame is refused by the WebSocket layer itself: close 1007.
//   - a well-formed push: every event with one bad field is answered in `rejected` with that field's
//     reason; every other event (odd but valid: SQL and path tricks in ids, prototype keys in rows,
//     big numbers, NaN-like strings) must be acked and stored byte for byte (a resent push: `duplicate`
//     with the original seq).
import { RejectReason, ErrorCode } from '../../shared/errors.ts';
import { MAX_PAYLOAD_DEPTH } from '../../shared/limits.ts';
import { seededRandom } from '../kit/ws-client.ts';

export type TokenKind = 'write' | 'read' | 'none' | 'malformed' | 'unknown' | 'otherProject';

/** One event of a well-formed push, with the answer it must get. */
export interface EventPlan {
  clientActionId: number;
  sessionId: string;
  /** null: must be acked (or `duplicate` when the push is a resend); else the rejection reason. */
  reject: string | null;
  /** JSON of payload.newData / previousData as sent, for the byte-for-byte check of what is stored. */
  newData: string;
  previousData: string;
}

export interface FramePlan {
  /** Text frame (string), or a binary one (Buffer, sent with binary: true), or invalid UTF-8 as text. */
  data: string | Buffer;
  binary: boolean;
  /** Set for well-formed pushes that must be answered with an ack. */
  push?: { batch: number; events: EventPlan[]; resendOf?: number };
}

export type Expectation =
  | { kind: 'refused'; statuses: number[] }
  | { kind: 'error'; codes: string[] }
  | { kind: 'close'; codes: number[] }
  /** Nothing wrong was sent: the socket must stay open with no error frame (the fuzzer closes it). */
  | { kind: 'fine' };

export interface HostileScript {
  id: number;
  /** Generator kind, for the figures. */
  kind: string;
  /** Project segment of the URL (already encoded for the path). */
  urlProject: string;
  /** The project the events would be stored in, when the socket is accepted. */
  project: string;
  token: TokenKind;
  /** Raw Authorization header for 'malformed'. */
  authHeader?: string;
  /** Device id of a well-formed hello sent first (null: no hello). */
  hello: string | null;
  /** Hello under a device id bound to another token (filled in by the fuzzer with a device's id). */
  hijackHello?: boolean;
  frames: FramePlan[];
  expect: Expectation;
}

export interface HostileConfig {
  /** Project of the well-behaved devices: hostile events there avoid the app's tables. */
  projectA: string;
  /** A second project that only hostile sockets use. */
  projectB: string;
  appTables: string[];
  maxFrameBytes: number;
  maxBatchEvents: number;
  maxEventBytes: number;
}

const POLLUTION_KEYS = ['__proto__', 'constructor', 'prototype'];
const SQL_TRICKS = [
  "'; DROP TABLE events; --",
  '" OR 1=1 --',
  "x' UNION SELECT * FROM tokens --",
  'a\u0000b',
  '../../etc/passwd',
  '..\\..\\windows\\system32',
  '%2e%2e%2f',
  '/v1/projects/p2/sync',
  '$(rm -rf /)',
  '`id`',
  '\u202eevil',
  '🙂'.repeat(20),
  'NaN',
  'Infinity',
  'null',
  'undefined',
  '__proto__',
  'constructor',
  'prototype',
  '*',
  '%',
  '_',
  ' ',
];
const NAN_LIKE = ['NaN', '-NaN', 'Infinity', '-Infinity', '1e999', '-0', '0x10', '١٢٣', '9007199254740993', ''];
const BAD_TIMESTAMPS = ['NaN', 'yesterday', '2025-13-45T00:00:00Z', '2025-01-02T03:04:05', '2025-01-02', '', 'Infinity', "2025-01-02T03:04:05Z'; DROP TABLE x; --"];
const GOOD_TIMESTAMPS = ['2025-01-02T03:04:05.678Z', '2025-01-02T03:04:05+02:00', '1970-01-01T00:00Z', '2099-12-31T23:59:59.999999-11:00'];
const ACTIONS = ['create', 'update', 'delete', 'soft_delete', 'restore'];
const BAD_ACTIONS = ['drop', 'CREATE', '', '__proto__', 'constructor', "create'; --", 'create '];
/** Entity types that pass the identifier rule (odd but valid). */
const ODD_TYPES = ['__proto__', 'constructor', 'prototype', 'DROP_TABLE_events', 'sqlite_master', 'fuzz_t', '_', 'x'.repeat(128), 'hasOwnProperty', 'toString'];
/** Entity types that must be refused (not a plain identifier). */
const BAD_TYPES = ['', 'issues; DROP TABLE issues', '../issues', 'issues.x', '1abc', 'a b', 'x'.repeat(129), '"issues"', 'issues--', '%2e%2e'];

/** Sets an own, enumerable key (also `__proto__`, which a literal would turn into the prototype). */
function put(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** Stands for a nesting too deep to build with JSON.stringify; replaced in the frame's text. */
const DEEP_MARK = '\u0000deep\u0000';

export class HostileGenerator {
  private readonly rnd: () => number;
  /** Text that replaces DEEP_MARK in the frame being built (one per frame at most). */
  private deepText: string | null = null;
  private nextScriptId = 1;
  private nextActionId = 1;
  /** Pushes of all-valid events already planned, for resends (duplicates). */
  private readonly sentOk: { project: string; deviceId: string; frame: FramePlan }[] = [];

  constructor(
    seed: number,
    private readonly cfg: HostileConfig,
  ) {
    this.rnd = seededRandom(seed);
  }

  private int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  private pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)]!;
  }
  private chance(p: number): boolean {
    return this.rnd() < p;
  }

  /** A trick string for an identifier, made unique enough to be a fresh key. */
  private trickId(tag: string): string {
    const t = this.pick(SQL_TRICKS);
    return `${t}${this.chance(0.5) ? `-${tag}` : ''}`;
  }

  /** A row (payload newData/previousData) with odd values and prototype keys at every level. */
  private oddRow(depthBudget: number): Record<string, unknown> {
    const row: Record<string, unknown> = {};
    const n = 1 + this.int(5);
    for (let i = 0; i < n; i++) {
      const key = this.chance(0.4) ? this.pick(POLLUTION_KEYS) : this.chance(0.3) ? this.pick(SQL_TRICKS) : `k${i}`;
      put(row, key, this.oddValue(depthBudget - 1));
    }
    if (this.chance(0.5)) put(row, '__proto__', { polluted: 'yes', isAdmin: true });
    return row;
  }

  private oddValue(depthBudget: number): unknown {
    switch (this.int(depthBudget > 1 ? 9 : 7)) {
      case 0:
        return this.pick([2 ** 53 + 1, -(2 ** 53) - 1, 1e308, -1e-308, 0, -1, 1.5, Number.MAX_SAFE_INTEGER]);
      case 1:
        return this.pick(NAN_LIKE);
      case 2:
        return this.pick(SQL_TRICKS);
      case 3:
        return null;
      case 4:
        return this.chance(0.5);
      case 5:
        return 'x'.repeat(this.int(200));
      case 6:
        return Array.from({ length: this.int(20) }, () => this.int(1000));
      case 7:
        return this.oddRow(depthBudget - 1);
      default:
        return [this.oddRow(depthBudget - 1)];
    }
  }

  /** Nesting of exactly `levels` objects under one key (payload counts as level 1). */
  private nested(levels: number, key?: string): Record<string, unknown> {
    let v: Record<string, unknown> = { leaf: 1 };
    for (let i = 1; i < levels; i++) {
      const o: Record<string, unknown> = {};
      put(o, key ?? this.pick(['a', ...POLLUTION_KEYS]), v);
      v = o;
    }
    return v;
  }

  /** One well-formed event for `project`, good or with exactly one bad field. */
  private event(project: string, bad: boolean): { obj: Record<string, unknown>; plan: EventPlan } {
    const cid = this.nextActionId++;
    const types = project === this.cfg.projectA ? ODD_TYPES : [...ODD_TYPES, ...this.cfg.appTables];
    let sessionId = this.chance(0.5) ? this.trickId(`s${cid % 7}`) : `fs-${cid % 5}`;
    let entityType: string = this.pick(types);
    let entityId = this.chance(0.6) ? this.trickId(`e${cid}`) : `e-${cid}`;
    let actionType = this.pick(ACTIONS);
    let clientTimestamp = this.pick(GOOD_TIMESTAMPS);
    // Rows a few levels deep; payload is level 1, so a row value at depth d is level d+1.
    let newData: Record<string, unknown> | null = this.chance(0.85) ? this.oddRow(4) : null;
    let previousData: Record<string, unknown> | null = this.chance(0.3) ? this.oddRow(3) : null;
    let reject: string | null = null;
    if (bad) {
      switch (this.int(8)) {
        case 0:
          entityId = '';
          reject = RejectReason.InvalidEntityId;
          break;
        case 1:
          entityType = this.pick(BAD_TYPES);
          reject = RejectReason.InvalidEntityType;
          break;
        case 2:
          actionType = this.pick(BAD_ACTIONS);
          reject = RejectReason.InvalidActionType;
          break;
        case 3:
          sessionId = '';
          reject = RejectReason.InvalidSessionId;
          break;
        case 4:
          clientTimestamp = this.pick(BAD_TIMESTAMPS);
          reject = RejectReason.InvalidTimestamp;
          break;
        case 5:
          // payload (1) + newData (2) + MAX more levels: one past the limit, or far past it.
          // Thousands of levels once made the hub's serialisation throw inside a shared group commit (issue 11).
          // That deep, JSON.stringify itself overflows: the levels are spliced into the frame's text (deepText).
          if (this.deepText === null && this.chance(0.3)) {
            newData = { deep: DEEP_MARK };
            const levels = 4000 + this.int(3500);
            this.deepText = '{"a":'.repeat(levels) + '{"leaf":1}' + '}'.repeat(levels);
          } else newData = { deep: this.nested(this.chance(0.4) ? MAX_PAYLOAD_DEPTH : MAX_PAYLOAD_DEPTH + this.int(2000)) };
          reject = RejectReason.InvalidPayload;
          break;
        case 6:
          previousData = { deep: this.nested(MAX_PAYLOAD_DEPTH + 1 + this.int(50)) };
          reject = RejectReason.InvalidPayload;
          break;
        default:
          newData = { big: 'x'.repeat(this.cfg.maxEventBytes + this.int(1000)) };
          reject = RejectReason.PayloadTooLarge;
      }
    } else if (this.chance(0.1)) {
      // Deep but within the limit: payload(1) + newData(2) + nested(MAX-2) = MAX levels.
      newData = { deep: this.nested(MAX_PAYLOAD_DEPTH - 2) };
    }
    const payload: Record<string, unknown> = { schemaVersion: 1, newData, previousData };
    if (this.chance(0.3)) put(payload, this.pick(POLLUTION_KEYS), { schemaVersion: 2, newData: { evil: true } });
    const obj: Record<string, unknown> = { clientActionId: cid, sessionId, actionType, entityType, entityId, payload, clientTimestamp };
    // Extra fields are ignored by the schema: prototype keys, a crafted project, a crafted seq.
    if (this.chance(0.3)) put(obj, this.pick(POLLUTION_KEYS), { clientActionId: 'x', entityType: 'issues' });
    if (this.chance(0.2)) put(obj, 'project', this.cfg.projectB);
    if (this.chance(0.1)) put(obj, 'serverSeq', 1);
    if (this.chance(0.1)) put(obj, 'deviceId', 'someone-else');
    return { obj, plan: { clientActionId: cid, sessionId, reject, newData: JSON.stringify(newData), previousData: JSON.stringify(previousData) } };
  }

  /** A well-formed push frame for `project` (some events bad when `mixBad`). */
  private pushFrame(project: string, batch: number, mixBad: boolean, maxEvents = 4): FramePlan {
    const n = 1 + this.int(maxEvents);
    const objs: Record<string, unknown>[] = [];
    const plans: EventPlan[] = [];
    for (let i = 0; i < n; i++) {
      const { obj, plan } = this.event(project, mixBad && this.chance(0.35));
      objs.push(obj);
      plans.push(plan);
    }
    const frame: Record<string, unknown> = { type: 'push', batch, events: objs };
    if (this.chance(0.2)) put(frame, this.pick(POLLUTION_KEYS), { type: 'hello', events: [] });
    if (this.chance(0.2)) put(frame, 'project', this.cfg.projectB);
    const deep = JSON.stringify(DEEP_MARK);
    const encode = () => {
      const text = JSON.stringify(frame);
      return this.deepText !== null && text.includes(deep) ? text.replace(deep, this.deepText) : text;
    };
    let data = encode();
    // A well-formed push must fit the frame limit (else it is a frame_too_large violation): drop events until it does.
    while (Buffer.byteLength(data) > this.cfg.maxFrameBytes && objs.length > 1) {
      objs.pop();
      plans.pop();
      data = encode();
    }
    this.deepText = null;
    if (Buffer.byteLength(data) > this.cfg.maxFrameBytes) throw new Error(`generator bug: one event is larger than maxFrameBytes`);
    return { data, binary: false, push: { batch, events: plans } };
  }

  /** A minimal valid event object (for frames that must fail as a whole). */
  private plainEvent(): Record<string, unknown> {
    const cid = this.nextActionId++;
    return { clientActionId: cid, sessionId: 's', actionType: 'create', entityType: 'fuzz_t', entityId: `e${cid}`, payload: { schemaVersion: 1, newData: { a: 1 }, previousData: null }, clientTimestamp: GOOD_TIMESTAMPS[0] };
  }

  /** A terminal protocol violation sent after hello: the frame and the one error code it must get. */
  private violationAfterHello(): { frame: FramePlan; codes: string[]; kind: string } | { frame: FramePlan; closeCodes: number[]; kind: string } {
    // Past maxFrameBytes a frame gets frame_too_large; past twice that the socket is closed (1009) unread.
    const max = this.cfg.maxFrameBytes;
    const text = (data: string, codes: string[], kind: string) => {
      const bytes = Buffer.byteLength(data);
      if (bytes > 2 * max) return { frame: { data, binary: false }, closeCodes: [1009], kind };
      return { frame: { data, binary: false }, codes: bytes > max ? [ErrorCode.FrameTooLarge] : codes, kind };
    };
    const ev = () => this.plainEvent();
    // A batch number no well-formed push of the script uses: were the frame wrongly accepted, its ack could not pass for theirs.
    const B = 999_999;
    const push = (over: Record<string, unknown>) => JSON.stringify({ type: 'push', batch: B, events: [ev()], ...over });
    const evWith = (over: Record<string, unknown>) => JSON.stringify({ type: 'push', batch: B, events: [{ ...ev(), ...over }] });
    switch (this.int(17)) {
      case 0: {
        const bytes = Buffer.from(Array.from({ length: 1 + this.int(2000) }, () => this.int(256)));
        return { frame: { data: bytes, binary: true }, codes: [ErrorCode.InvalidFrame], kind: 'binary-random' };
      }
      case 1:
        return { frame: { data: Buffer.from(push({})), binary: true }, codes: [ErrorCode.InvalidFrame], kind: 'binary-json' };
      case 2: {
        // Random printable text: not JSON unless it happens to parse.
        const s = Array.from({ length: 1 + this.int(300) }, () => String.fromCharCode(32 + this.int(95))).join('');
        let parses = true;
        try {
          JSON.parse(s);
        } catch {
          parses = false;
        }
        return text(s, [parses ? ErrorCode.InvalidFrame : ErrorCode.BadJson], 'text-random');
      }
      case 3: {
        const full = push({});
        return text(full.slice(0, 1 + this.int(full.length - 2)), [ErrorCode.BadJson], 'truncated-json');
      }
      case 4: {
        // Nesting deep enough to be absurd, well under the frame limit.
        const depth = 1000 + this.int(Math.min(200_000, this.cfg.maxFrameBytes / 6));
        const open = this.chance(0.5) ? '[' : '{"a":';
        const close = open === '[' ? ']' : '}';
        return text(open.repeat(depth) + '1' + close.repeat(depth), [ErrorCode.InvalidFrame], 'deep-json');
      }
      case 5: {
        // Deep nesting inside a push's events array: not events, so the frame fails its schema.
        const depth = 1000 + this.int(20_000);
        return text(`{"type":"push","batch":${B},"events":${'['.repeat(depth)}${']'.repeat(depth)}}`, [ErrorCode.InvalidFrame], 'deep-events');
      }
      case 6: {
        // A string or array bigger than the frame limit.
        const n = this.cfg.maxFrameBytes + 1 + this.int(this.cfg.maxFrameBytes);
        const data = this.chance(0.5) ? push({ pad: 'x'.repeat(n) }) : push({ pad: new Array(Math.ceil(n / 2)).fill(0) });
        return text(data, [ErrorCode.FrameTooLarge], 'huge-frame');
      }
      case 7:
        return text(push({ events: Array.from({ length: this.cfg.maxBatchEvents + 1 + this.int(20) }, ev) }), [ErrorCode.BatchTooLarge], 'batch-too-large');
      case 8: {
        const field = this.pick(['clientActionId', 'sessionId', 'entityId', 'entityType', 'actionType', 'payload', 'clientTimestamp']);
        const wrong = this.pick<unknown>([null, 1, '1', [], {}, true, { $gt: '' }]);
        // A string where a string is wanted is valid: choose a non-string for string fields.
        // (a number is right for clientActionId: a string goes there instead)
        const value = field === 'clientActionId' ? (typeof wrong === 'number' ? '1' : wrong) : typeof wrong === 'string' && field !== 'payload' ? 7 : wrong;
        return text(evWith({ [field]: value }), [ErrorCode.InvalidFrame], 'wrong-type');
      }
      case 9: {
        const big = this.pick(['9007199254740993', '1e300', '-9007199254740993', '1.5', '-1']);
        if (this.chance(0.5)) return text(`{"type":"push","batch":${big},"events":[${JSON.stringify(ev())}]}`, [ErrorCode.InvalidFrame], 'big-number');
        const e = JSON.stringify(ev()).replace(/"clientActionId":\d+/, `"clientActionId":${big === '-1' ? '1e400' : big}`);
        return text(`{"type":"push","batch":${B},"events":[${e}]}`, [ErrorCode.InvalidFrame], 'big-number');
      }
      case 10: {
        if (this.chance(0.5)) return text(`{"type":"push","batch":NaN,"events":[]}`, [ErrorCode.BadJson], 'nan-like');
        return text(push({ batch: this.pick(NAN_LIKE) }), [ErrorCode.InvalidFrame], 'nan-like');
      }
      case 11:
        return text(JSON.stringify({ type: this.pick(['pull', 'subscribe', 'PUSH', 'Hello', '', '__proto__', 'constructor', 'events', 'ack', 'welcome', 'error']), project: this.cfg.projectB }), [ErrorCode.InvalidFrame], 'unknown-type');
      case 12:
        return text(JSON.stringify({ type: 'hello', protocol: 1, deviceId: 'second', afterSeq: 0 }), [ErrorCode.DuplicateHello], 'second-hello');
      case 13:
        return text(push({ events: [] }), [ErrorCode.InvalidFrame], 'empty-push');
      case 14: {
        // Pollution at the frame level cannot change its type: a push whose __proto__ says hello is still judged as what it is.
        const f: Record<string, unknown> = {};
        put(f, '__proto__', { type: 'push', batch: 1, events: [ev()] });
        put(f, 'constructor', { prototype: { polluted: true } });
        return text(JSON.stringify(f), [ErrorCode.InvalidFrame], 'proto-only-frame');
      }
      case 15: {
        // Invalid UTF-8 in a text frame: the WebSocket layer refuses it (1007) before the hub sees JSON.
        const bad = Buffer.concat([Buffer.from('{"type":"push","x":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]);
        return { frame: { data: bad, binary: false }, closeCodes: [1007], kind: 'invalid-utf8' };
      }
      default:
        return text(push({ events: [{ ...ev(), payload: { schemaVersion: this.pick([2, '1', 0, null]), newData: {}, previousData: null } }] }), [ErrorCode.InvalidFrame], 'bad-payload-shape');
    }
  }

  /** Pushes of valid events (some with bad fields) for a socket that said hello; some resends of earlier pushes. */
  private pushes(project: string, deviceId: string, count: number, firstBatch: number, maxEvents = 4): FramePlan[] {
    const out: FramePlan[] = [];
    for (let i = 0; i < count; i++) {
      const batch = firstBatch + i;
      const earlier = this.sentOk.filter((s) => s.project === project && s.deviceId === deviceId);
      if (earlier.length > 0 && this.chance(0.05)) {
        // A resend: same events, same device: each must be `duplicate` with the original seq.
        const orig = this.pick(earlier).frame;
        const parsed = JSON.parse(orig.data as string) as Record<string, unknown>;
        out.push({ data: JSON.stringify({ type: 'push', batch, events: parsed.events }), binary: false, push: { batch, events: orig.push!.events, resendOf: orig.push!.batch } });
        continue;
      }
      const f = this.pushFrame(project, batch, this.chance(0.7), maxEvents);
      if (f.push!.events.every((e) => e.reject === null)) this.sentOk.push({ project, deviceId, frame: f });
      out.push(f);
    }
    if (this.sentOk.length > 2000) this.sentOk.splice(0, 1000);
    return out;
  }

  /** The next hostile socket. `pushesPerSocket` bounds its well-formed pushes (the bulk of the frames). */
  nextScript(pushesPerSocket: number): HostileScript {
    const id = this.nextScriptId++;
    const { projectA, projectB } = this.cfg;
    // A quarter in the devices' project (they stream and set aside these events), the rest in B.
    const project = this.chance(0.25) ? projectA : projectB;
    // A small, reused set of hostile device ids per project, tricks included (each is bound to the hostile write token).
    const deviceId = this.chance(0.5) ? `${this.pick(SQL_TRICKS)}#${id % 4}` : `fz-${id % 6}`;
    const base = { id, urlProject: project, project, token: 'write' as TokenKind, hello: deviceId as string | null, frames: [] as FramePlan[] };
    const r = this.rnd();
    if (r < 0.1) {
      // Refused at the upgrade.
      switch (this.int(6)) {
        case 0:
          return { ...base, kind: 'upgrade-no-token', token: 'none', hello: null, expect: { kind: 'refused', statuses: [401] } };
        case 1:
          return { ...base, kind: 'upgrade-malformed-token', token: 'malformed', authHeader: this.pick(['Bearer', 'Bearer ', `Bearer ${this.pick(SQL_TRICKS.filter((t) => /^[\x20-\x7e]*$/.test(t)))}`, 'Basic dXNlcjpwYXNz', `Bearer shub_${'a'.repeat(5000)}`, 'bearer shub_x_y']), hello: null, expect: { kind: 'refused', statuses: [401] } };
        case 2:
          return { ...base, kind: 'upgrade-unknown-token', token: 'unknown', hello: null, expect: { kind: 'refused', statuses: [401] } };
        case 3:
          // A token of project B on A's URL (and the reverse).
          return { ...base, kind: 'upgrade-other-project', urlProject: projectA, project: projectA, token: 'otherProject', hello: null, expect: { kind: 'refused', statuses: [403] } };
        case 4: {
          const p = this.pick(['..%2F' + projectB, '%2e%2e', encodeURIComponent("p1' OR 1=1"), 'p1%00', '..', encodeURIComponent('../../etc'), `${projectA}%2F..%2F${projectB}`, '%252e']);
          return { ...base, kind: 'upgrade-path-trick', urlProject: p, hello: null, expect: { kind: 'refused', statuses: [403, 404] } };
        }
        default:
          // A well-formed project name that is not the token's.
          return { ...base, kind: 'upgrade-wrong-project', urlProject: this.pick(['nope', 'p1-', projectA === 'p1' ? 'P1' : 'p1', 'admin']), hello: null, expect: { kind: 'refused', statuses: [403] } };
      }
    }
    if (r < 0.16) {
      // Read tokens and the devices' ids exist in project A.
      Object.assign(base, { urlProject: projectA, project: projectA });
      // Before hello: silence, a push, or a hello the hub must refuse.
      switch (this.int(6)) {
        case 0:
          return { ...base, kind: 'silent', hello: null, expect: { kind: 'error', codes: [ErrorCode.HelloRequired] } };
        case 1:
          return { ...base, kind: 'push-before-hello', hello: null, frames: [this.pushFrame(project, 1, false)].map((f) => ({ data: f.data, binary: false })), expect: { kind: 'error', codes: [ErrorCode.HelloRequired] } };
        case 2:
          return { ...base, kind: 'hello-bad-protocol', hello: null, frames: [{ data: JSON.stringify({ type: 'hello', protocol: this.pick([0, 2, 99, -1]), deviceId, afterSeq: 0 }), binary: false }], expect: { kind: 'error', codes: [ErrorCode.UnsupportedProtocol] } };
        case 3:
          return { ...base, kind: 'hello-future-cursor', hello: null, frames: [{ data: JSON.stringify({ type: 'hello', protocol: 1, deviceId, afterSeq: Number.MAX_SAFE_INTEGER - this.int(1000) }), binary: false }], expect: { kind: 'error', codes: [ErrorCode.CursorAhead] } };
        case 4:
          // The fuzzer puts a well-behaved device's id in this hello (bound to the devices' token).
          return { ...base, kind: 'hello-hijack-device', hello: null, hijackHello: true, expect: { kind: 'error', codes: [ErrorCode.Forbidden] } };
        default:
          // Its own device id: an id used by the read token is bound to it (and the hub would rightly refuse it to the write token).
          return { ...base, kind: 'read-token-push', token: 'read', hello: `rd-${id % 3}`, frames: [this.pushFrame(projectA, 1, false)].map((f) => ({ data: f.data, binary: false })), expect: { kind: 'error', codes: [ErrorCode.Forbidden] } };
      }
    }
    // Hello, then well-formed pushes (odd and bad events), then maybe one violation.
    const flood = this.chance(0.08);
    const count = flood ? pushesPerSocket * 4 : this.int(pushesPerSocket + 1);
    const frames = this.pushes(project, deviceId, count, 1, flood ? 2 : 4);
    if (!flood && this.chance(0.6)) {
      const v = this.violationAfterHello();
      frames.push(v.frame);
      const expect: Expectation = 'codes' in v ? { kind: 'error', codes: v.codes } : { kind: 'close', codes: v.closeCodes };
      return { ...base, kind: v.kind, frames, expect };
    }
    return { ...base, kind: flood ? 'flood' : 'pushes', frames, expect: { kind: 'fine' } };
  }
}
