// Vitest global setup of the "postgres" project: one throwaway cluster for the whole run, its
// URL handed to the test workers in SYNCHUB_TEST_POSTGRES_URL, stopped (and removed) at the end.
import { startCluster, type Cluster } from './postgres.ts';

let cluster: Cluster | null = null;

export async function setup(): Promise<void> {
  cluster = await startCluster();
  process.env.SYNCHUB_TEST_POSTGRES_URL = cluster.url;
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
  cluster = null;
}
