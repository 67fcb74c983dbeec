// Test kit: seeded mutations of a parsed JSON frame, for the fast-path equivalence tests.
//
//   mutateAt(frame, path, value, rnd)  sets the value at path (each key but the last must exist);
//                                      an undefined value deletes the key half the time instead

export function mutateAt(frame: Record<string, unknown>, path: readonly (string | number)[], value: unknown, rnd: () => number): void {
  let target: Record<string | number, unknown> = frame;
  for (const k of path.slice(0, -1)) target = target[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (value === undefined && rnd() < 0.5) delete target[last];
  else target[last] = value;
}
