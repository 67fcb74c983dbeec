// The short fuzz run of `npm test`: a fixed seed (FUZZ_SEED overrides it), bounded in frames and
// time. The long run is `npm run fuzz -- --minutes 10 --seed S` (scripts/fuzz.ts). See fuzz.ts for
// what is checked, hostile.ts for what "bad" means per kind of input.
import { afterAll, expect, it } from 'vitest';
import { removeTempDirs } from '../kit/hub.ts';
import { runFuzz } from './fuzz.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20261128);
/**
 * Hostile frames in the short run, and the time it may take to send them. On 2 shared cores 25 s
 * carry about 19,000 frames (hub, agents and hostile clients share one event loop); 100,000 take
 * about 2 minutes, which is the long run's job (`npm run fuzz`).
 */
const FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000);
const HOSTILE_MS = 25_000;

afterAll(() => removeTempDirs());

it(`survives hostile clients while devices sync (seed ${SEED})`, { timeout: 150_000 }, async () => {
  const report = await runFuzz({ seed: SEED, frames: FRAMES, ms: HOSTILE_MS, sockets: 24 });
  const figures = { seed: report.seed, framesSent: report.framesSent, hostileSockets: report.hostileSockets, durationMs: report.durationMs, crashes: report.crashes, eventsLost: report.eventsLost, hubPeakRssMb: report.hubPeakRssMb };
  process.stderr.write(`fuzz figures: ${JSON.stringify(figures)}\n`);
  expect(report.failures).toEqual([]);
  expect(report.crashes).toBe(0);
  expect(report.eventsLost).toBe(0);
  expect(report.unexpectedInLog).toBe(0);
  // The run did exercise every kind of answer: refusals, error codes, rejections, acks.
  expect(report.hostileSockets).toBeGreaterThan(100);
  expect(report.acked).toBeGreaterThan(0);
  expect(report.rejected).toBeGreaterThan(0);
  expect(Object.keys(report.outcomes).filter((o) => o.startsWith('http')).length).toBeGreaterThan(0);
  expect(Object.keys(report.outcomes).filter((o) => o.startsWith('error')).length).toBeGreaterThan(5);
});
