// Entry of the store's writer thread (see sqlite-writer-thread.ts): owns the connection that writes
// and answers the main thread's calls one at a time, in the order they were sent.
import { parentPort, workerData } from 'node:worker_threads';
import { openHubDb, SqliteWriter, type WriterOps } from './sqlite-writer.ts';

export type WriterCall = { id: number; op: keyof WriterOps; args: unknown[] };
export type WriterReply = { id: number; value: unknown } | { id: number; error: { name: string; message: string; code?: string } };

const port = parentPort!;
const writer = new SqliteWriter(openHubDb((workerData as { path: string }).path));

port.on('message', (msg: WriterCall | 'close') => {
  if (msg === 'close') {
    // Every call sent before 'close' was answered already: the port delivers in order.
    writer.close();
    port.close();
    return;
  }
  let reply: WriterReply;
  try {
    reply = { id: msg.id, value: (writer[msg.op] as (...a: unknown[]) => unknown)(...msg.args) };
  } catch (err) {
    const e = err as Error & { code?: unknown };
    reply = { id: msg.id, error: { name: e.name, message: e.message, code: typeof e.code === 'string' ? e.code : undefined } };
  }
  port.postMessage(reply);
});
