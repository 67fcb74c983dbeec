// Summarise V8 CPU profiles (from `npm run bench -- --profile`): top self-time
// functions and self time per source area (hub/, shared/, zod, ws, SQLite, GC, idle).
//
//   node --import tsx profile-summary.ts results/profiles/ingest [--top 25]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' } }, allowPositionals: true });
if (positionals.length === 0) {
  process.stderr.write('usage: profile-summary.ts <dir-or-.cpuprofile>... [--top N]\n');
  process.exit(2);
}
const files = positionals.flatMap((p) =>
  statSync(p).isDirectory()
    ? readdirSync(p)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(p, f))
    : [p],
);

function area(cf: CallFrame): string {
  const u = cf.url;
  if (!u) {
    if (cf.functionName.startsWith('(')) return cf.functionName; // (garbage collector), (idle), (program)
    return 'native (SQLite via better-sqlite3, JSON, crypto, ...)';
  }
  if (u.includes('/node_modules/zod/')) return 'zod';
  if (u.includes('/node_modules/ws/')) return 'ws';
  if (u.includes('/node_modules/better-sqlite3/')) return 'better-sqlite3 (JS side)';
  if (u.includes('/node_modules/pino') || u.includes('/node_modules/prom-client')) return 'logging/metrics';
  if (u.includes('/node_modules/')) return 'other node_modules';
  if (u.startsWith('node:')) return 'node core';
  const m = /\/(hub|shared|agent)\//.exec(u);
  if (m) return `${m[1]}/`;
  return 'other';
}

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });
  const fn = new Map<string, number>();
  const areas = new Map<string, number>();
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame;
    const key = `${cf.functionName || '(anonymous)'}  ${cf.url ? `${basename(cf.url)}:${cf.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const a = area(cf);
    areas.set(a, (areas.get(a) ?? 0) + us);
  }
  const idle = areas.get('(idle)') ?? 0;
  const busy = total - idle;
  const pct = (us: number) => `${((us / busy) * 100).toFixed(1).padStart(5)}%`;
  process.stdout.write(`\n== ${file}\n   ${(total / 1e6).toFixed(1)} s sampled, ${((busy / total) * 100).toFixed(0)}% busy; shares below are of busy time\n\n`);
  process.stdout.write('   by area:\n');
  for (const [a, us] of [...areas].filter(([a]) => a !== '(idle)').sort((x, y) => y[1] - x[1])) process.stdout.write(`   ${pct(us)}  ${a}\n`);
  process.stdout.write(`\n   top ${values.top} functions by self time:\n`);
  for (const [k, us] of [...fn].filter(([k]) => !k.startsWith('(idle)')).sort((x, y) => y[1] - x[1]).slice(0, Number(values.top)))
    process.stdout.write(`   ${pct(us)}  ${k}\n`);
}
