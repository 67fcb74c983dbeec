// How much CPU other user-space processes on the machine took while a measurement ran,
// so that a figure taken on a busy machine is marked as such (the benchmark cannot stop
// them). Kernel threads (disk writeback, journal) are not counted: the benchmark's own
// fsyncs keep them busy.
import { readFileSync, readdirSync } from 'node:fs';
import { cpus } from 'node:os';

const HZ = 100; // USER_HZ: /proc times are in 1/100 s on Linux

export interface CpuSnapshot {
  at: number;
  /** pid -> utime+stime of every user-space process outside this tree (not cutime: a reaped child's whole life would count) */
  others: Map<string, number>;
  /** root pid -> utime+stime of the live processes of its tree, for each root given (`roots`). */
  trees: Map<string, number>;
}

function statFields(pid: string): string[] | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces: split after its closing paren
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * `roots`: processes of the benchmark that are not our descendants (the PostgreSQL postmaster:
 * pg_ctl detaches it) or whose own CPU is wanted (a hub child). Their trees are never counted
 * as the machine's noise, and each tree's time is kept in `trees`.
 */
export function cpuSnapshot(roots: number[] = []): CpuSnapshot | null {
  try {
    const parent = new Map<string, string>();
    const time = new Map<string, number>();
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const f = statFields(pid);
      if (!f) continue;
      // after the comm: [0]=state [1]=ppid ... [11]=utime [12]=stime
      parent.set(pid, f[1]!);
      time.set(pid, Number(f[11]) + Number(f[12]));
    }
    const me = String(process.pid);
    const rootSet = new Set(roots.map(String));
    const others = new Map<string, number>();
    const trees = new Map<string, number>([...rootSet].map((r) => [r, 0]));
    for (const [pid, t] of time) {
      if (pid === '2' || parent.get(pid) === '2') continue; // kernel threads
      let p: string | undefined = pid;
      let ours = false;
      for (let depth = 0; p && p !== '0' && depth < 30; depth++) {
        if (rootSet.has(p)) trees.set(p, trees.get(p)! + t);
        if (p === me || rootSet.has(p)) {
          ours = true;
          break;
        }
        p = parent.get(p);
      }
      if (!ours && !isAncestor(pid, me, parent)) others.set(pid, t);
    }
    return { at: performance.now(), others, trees };
  } catch {
    return null;
  }
}

function isAncestor(pid: string, of: string, parent: Map<string, string>): boolean {
  let p: string | undefined = parent.get(of);
  for (let depth = 0; p && p !== '0' && depth < 30; depth++) {
    if (p === pid) return true;
    p = parent.get(p);
  }
  return false;
}

/**
 * Average cores used by user-space processes outside this tree between two snapshots
 * (processes that ended in between are missed: an underestimate, never a double count).
 */
export function foreignCores(a: CpuSnapshot | null, b: CpuSnapshot | null): number | null {
  if (!a || !b) return null;
  const seconds = (b.at - a.at) / 1000;
  if (seconds <= 0) return null;
  let ticks = 0;
  for (const [pid, t] of b.others) ticks += Math.max(0, t - (a.others.get(pid) ?? 0));
  return Math.min(ticks / HZ / seconds, cpus().length);
}

/**
 * Average cores the tree of `root` (given to both snapshots) used between them: processes of
 * the tree that ended in between are missed, as above.
 */
export function treeCores(a: CpuSnapshot | null, b: CpuSnapshot | null, root: number): number | null {
  if (!a || !b) return null;
  const seconds = (b.at - a.at) / 1000;
  const before = a.trees.get(String(root));
  const after = b.trees.get(String(root));
  if (seconds <= 0 || before === undefined || after === undefined) return null;
  return Math.max(0, after - before) / HZ / seconds;
}
