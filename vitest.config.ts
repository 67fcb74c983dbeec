// Test runner configuration: every suite under test/, one forked process per file.
//
// Two projects: "sqlite" runs everything on the embedded store; "postgres" runs the hub suites
// (test/hub, test/postgres) again, the same files, against a real PostgreSQL cluster that its
// global setup starts. Without PostgreSQL binaries on this machine that project is skipped,
// loudly; with SYNCHUB_REQUIRE_POSTGRES=1 (set by .ci/run) it is a failure instead.
import { defineConfig } from 'vitest/config';
import { findPostgresBin } from './test/kit/postgres.ts';

const postgresBin = findPostgresBin();
if (!postgresBin) {
  const message = 'PostgreSQL server binaries not found (PATH, /usr/lib/postgresql/*/bin): the postgres test project cannot run';
  if (process.env.SYNCHUB_REQUIRE_POSTGRES === '1') throw new Error(`${message}; install postgresql (see README)`);
  process.stderr.write(`\n*** SKIPPING the PostgreSQL suites: ${message}. ***\n\n`);
}

const shared = {
  pool: 'forks' as const,
  // Tests start real hubs and child processes; every wait inside has its own shorter timeout.
  testTimeout: 60_000,
  hookTimeout: 30_000,
  teardownTimeout: 10_000,
};

export default defineConfig({
  test: {
    projects: [
      { test: { ...shared, name: 'sqlite', include: ['test/**/*.test.ts'], exclude: ['test/postgres/**'] } },
      ...(postgresBin
        ? [
            {
              test: {
                ...shared,
                name: 'postgres',
                include: ['test/hub/**/*.test.ts', 'test/postgres/**/*.test.ts'],
                env: { SYNCHUB_TEST_STORE: 'postgres' },
                globalSetup: ['test/kit/postgres-setup.ts'],
              },
            },
          ]
        : []),
    ],
  },
});
