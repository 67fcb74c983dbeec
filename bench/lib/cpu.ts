// How much CPU other processes on the machine took while a measurement ran, so that a
// figure taken on a busy machine is marked as such (the benchmark cannot stop them).
import { readFileSync, readdirSync } from 'node:fs';

const HZ = 100; // USER_HZ: /proc times are in 1/100 s on Linux

export interface CpuSnapshot {
  at: number;
  busy: number;
  ours: number;
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

/** Busy jiffies of the whole machine and of this process tree (reaped children included via cutime/cstime). */
export function cpuSnapshot(): CpuSnapshot | null {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
    const busy = cpu.slice(0, 8).reduce((a, b) => a + b, 0) - idle;
    const parent = new Map<string, string>();
    const time = new Map<string, number>();
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const f = statFields(pid);
      if (!f) continue;
      // after the comm: [0]=state [1]=ppid ... [11]=utime [12]=stime [13]=cutime [14]=cstime
      parent.set(pid, f[1]!);
      time.set(pid, Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
    }
    const me = String(process.pid);
    let ours = 0;
    for (const [pid, t] of time) {
      let p: string | undefined = pid;
      for (let depth = 0; p && p !== '0' && depth < 20; depth++) {
        if (p === me) {
          ours += t;
          break;
        }
        p = parent.get(p);
      }
    }
    return { at: performance.now(), busy, ours };
  } catch {
    return null;
  }
}

/** Average cores used by processes outside this tree between two snapshots. */
export function foreignCores(a: CpuSnapshot | null, b: CpuSnapshot | null): number | null {
  if (!a || !b) return null;
  const seconds = (b.at - a.at) / 1000;
  if (seconds <= 0) return null;
  return Math.max(0, (b.busy - a.busy - (b.ours - a.ours)) / HZ / seconds);
}
