// The SQLite store's writer thread, seen from the main thread. better-sqlite3 is synchronous: a
// commit and its fsync would hold the event loop, so that nothing is read, framed or sent while the
// disk works. In a worker thread they don't; the main thread keeps receiving, validating and
// sending, and a push that arrives mid-commit is ready for the next one.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { SyncError } from '../../shared/errors.ts';
import type { WriterCall, WriterReply } from './sqlite-writer-worker.ts';
import type { SqliteWriter, WriterOps } from './sqlite-writer.ts';

/** How the store reaches its writer: a thread, or (':memory:', which a thread cannot share) inline. */
export interface WriterPort {
  call<K extends keyof WriterOps>(op: K, ...args: Parameters<WriterOps[K]>): Promise<ReturnType<WriterOps[K]>>;
  /** True while a call is out (the writer may be inside a transaction). */
  readonly busy: boolean;
  /** Why the writer died (every call fails with it), or null. */
  readonly failure: Error | null;
  /** Finish every call already made, then close the writer's connection. */
  close(): Promise<void>;
  /** Called once if the writer dies (the thread crashed): every call then rejects with store_unavailable. */
  onFatal(listener: (err: Error) => void): void;
}

export class InlineWriter implements WriterPort {
  readonly busy = false;
  readonly failure = null;

  constructor(private readonly writer: SqliteWriter) {}

  async call<K extends keyof WriterOps>(op: K, ...args: Parameters<WriterOps[K]>): Promise<ReturnType<WriterOps[K]>> {
    return (this.writer[op] as (...a: unknown[]) => ReturnType<WriterOps[K]>)(...args);
  }

  async close(): Promise<void> {
    this.writer.close();
  }

  onFatal(): void {}
}

export class WriterThread implements WriterPort {
  private readonly worker: Worker;
  private readonly calls = new Map<number, { resolve: (v: never) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  failure: SyncError | null = null;
  private closed: Promise<void> | null = null;
  private readonly fatalListeners: ((err: Error) => void)[] = [];

  constructor(path: string) {
    this.worker = spawn(path);
    this.worker.unref();
    this.worker.on('message', (reply: WriterReply) => {
      const call = this.calls.get(reply.id);
      if (!call) return;
      this.calls.delete(reply.id);
      if (this.calls.size === 0) this.worker.unref();
      if ('error' in reply) call.reject(toError(reply.error));
      else call.resolve(reply.value as never);
    });
    this.worker.on('error', (err) => this.die(err));
    this.worker.on('exit', (code) => {
      if (this.closed === null) this.die(new Error(`it exited with code ${code}`));
    });
  }

  get busy(): boolean {
    return this.calls.size > 0;
  }

  call<K extends keyof WriterOps>(op: K, ...args: Parameters<WriterOps[K]>): Promise<ReturnType<WriterOps[K]>> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new SyncError('store_unavailable', 'the store is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      // Referenced while a call is out: a commit under way keeps the process alive until it is durable.
      if (this.calls.size === 1) this.worker.ref();
      this.worker.postMessage({ id, op, args } satisfies WriterCall);
    });
  }

  close(): Promise<void> {
    this.closed ??= this.failure
      ? this.worker.terminate().then(() => undefined)
      : new Promise<void>((resolve) => {
          this.worker.once('exit', () => resolve());
          this.worker.ref();
          this.worker.postMessage('close');
        });
    return this.closed;
  }

  onFatal(listener: (err: Error) => void): void {
    this.fatalListeners.push(listener);
  }

  private die(cause: Error): void {
    if (this.failure) return;
    this.failure = new SyncError('store_unavailable', `the store's writer thread died: ${cause.message}`);
    for (const call of this.calls.values()) call.reject(this.failure);
    this.calls.clear();
    for (const listener of this.fatalListeners) listener(this.failure);
  }
}

/**
 * The thread runs the compiled writer (an installed package: plain JavaScript). In a checkout, the
 * TypeScript sources bundled once per process with esbuild (a dev dependency, as tsx is): loading
 * tsx inside every thread instead costs a second or more per store opened.
 */
function spawn(path: string): Worker {
  const workerData = { path };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./sqlite-writer-worker.js', import.meta.url), { workerData });
  return new Worker(checkoutBundle(), { eval: true, workerData });
}

let bundled: string | null = null;

function checkoutBundle(): string {
  if (bundled !== null) return bundled;
  const require = createRequire(import.meta.url);
  const esbuild = require('esbuild') as typeof import('esbuild');
  const out = esbuild.buildSync({
    entryPoints: [fileURLToPath(new URL('./sqlite-writer-worker.ts', import.meta.url))],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['better-sqlite3'],
    write: false,
    logLevel: 'error',
  });
  // An eval'd thread has no file of its own: its require() resolves from this module.
  bundled = `(function (require) {\n${out.outputFiles[0]!.text}\n})(require('node:module').createRequire(${JSON.stringify(fileURLToPath(import.meta.url))}));`;
  return bundled;
}

/** The thread's error, rebuilt: a SyncError keeps its stable code, anything else its name and message. */
function toError(e: { name: string; message: string; code?: string }): Error {
  if (e.name === 'SyncError' && e.code !== undefined) return new SyncError(e.code, e.message);
  const err = Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code });
  err.name = e.name;
  return err;
}
