// The value checks the hand-written frame fast paths share (push-fast-path.ts on the hub,
// events-fast-path.ts on the agent): each answers exactly as its zod counterpart in protocol.ts.

export type Obj = Record<string, unknown>;

export const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
/** A row: a JSON object, or null (newData / previousData). */
export const isRow = (v: unknown): v is Obj | null => v === null || isObject(v);
/** A string of `min` to `max` UTF-16 code units (zod's min/max count the same way). */
export const isText = (v: unknown, min: number, max: number): v is string => typeof v === 'string' && v.length >= min && v.length <= max;
