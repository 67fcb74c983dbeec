// The test kit checks what it receives: a frame outside the protocol fails the test.
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { closeAllClients, makeEvent, SyncClient } from '../kit/ws-client.ts';
import { PushEventSchema } from '../../shared/event.ts';

let server: WebSocketServer | undefined;
afterEach(async () => {
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

async function fakeHub(frames: string[]): Promise<string> {
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => server!.once('listening', r));
  server.on('connection', (ws) => ws.on('message', () => frames.forEach((f) => ws.send(f))));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('test kit', () => {
  it('rejects waits and fails closeAllClients on a frame that does not parse', async () => {
    const url = await fakeHub(['{"type":"welcome","project":"p1","deviceId":"d","headSeq":0}', '{"type":"events","events":[],"throughSeq":1,"headSeq":1}']);
    const c = await SyncClient.connect(url, 'p1', 'x');
    await expect(c.hello('d', 0)).resolves.toMatchObject({ type: 'welcome' });
    await expect(c.waitForSeq(1, 2000)).rejects.toThrow(/does not parse/);
    expect(c.badFrames).toHaveLength(1);
    await expect(closeAllClients()).rejects.toThrow(/unparseable/);
  });

  it('makeEvent builds a valid push event of about the requested payload size', () => {
    const e = makeEvent(5, { payloadBytes: 300 });
    expect(PushEventSchema.parse(e)).toEqual(e);
    expect(JSON.stringify(e.payload).length).toBe(300);
    expect(makeEvent(6, { entityType: 'boards' }).entityType).toBe('boards');
  });
});
