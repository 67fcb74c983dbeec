// Direct TLS: `hub serve --tls-cert F --tls-key F` serves wss://; an agent daemon syncs over it
// when it trusts the certificate (NODE_EXTRA_CA_CERTS) and refuses it otherwise; a renewed
// certificate is picked up on reload (SIGHUP) by new connections.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type PeerCertificate } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../kit/app-db.ts';
import { checkConverged, makeDevices, quiesce, spawnAgent, type Device } from '../kit/devices.ts';
import { freshStoreLocation, initHubDb, openStoreAt, spawnHub, startHub, type SpawnedHub, type TestHub } from '../kit/hub.ts';
import { delay } from '../kit/ws-client.ts';
import type { EventStore } from '../../hub/store/event-store.ts';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A self-signed certificate for 127.0.0.1 (openssl), as cert.pem/key.pem under `dir/name`. */
function makeCert(dir: string, name: string): { certFile: string; keyFile: string; fingerprint: string } {
  const certFile = join(dir, `${name}-cert.pem`);
  const keyFile = join(dir, `${name}-key.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=synchub test ${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const der = Buffer.from(readFileSync(certFile, 'utf8').replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return { certFile, keyFile, fingerprint: createHash('sha256').update(der).digest('hex') };
}

async function readStore<T>(location: string, read: (s: EventStore) => Promise<T>): Promise<T> {
  const s = await openStoreAt(location);
  try {
    return await read(s);
  } finally {
    await s.close();
  }
}

/** The certificate the server at `port` presents, trusting `ca`. */
function peerFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: readFileSync(ca) }, () => {
      const cert = s.getPeerCertificate() as PeerCertificate;
      s.destroy();
      resolve(createHash('sha256').update(cert.raw).digest('hex'));
    });
    s.once('error', reject);
  });
}

describe('direct TLS', () => {
  it('an agent daemon syncs over wss:// when it trusts the certificate, and refuses one it does not trust', async () => {
    const tmp: TempDir = tempDir('synchub-tls-');
    cleanups.push(() => tmp.cleanup());
    const cert = makeCert(tmp.dir, 'a');
    const location = await freshStoreLocation();
    const token = await initHubDb(location);
    const hub: SpawnedHub = await spawnHub(location, 0, { args: ['--tls-cert', cert.certFile, '--tls-key', cert.keyFile] });
    cleanups.push(() => hub.stop());
    expect(hub.url).toMatch(/^wss:\/\//);
    // The hub process writes the store; read it afresh each time (the SQLite store caches heads
    // for its own writes only).
    const store = {
      headSeq: (project: string) => readStore(location, (s) => s.headSeq(project)),
      readAfter: (project: string, after: number, limit: number) => readStore(location, (s) => s.readAfter(project, after, limit)),
    } as EventStore;
    const ref = { url: hub.url, project: 'p1', token, store };

    const devices: Device[] = makeDevices(tmp.dir, ref, ['trusting', 'untrusting']);
    cleanups.push(async () => {
      for (const d of devices) await d.close();
    });
    const [trusting, untrusting] = devices as [Device, Device];
    const good = spawnAgent(tmp.dir, trusting.path, ref, { NODE_EXTRA_CA_CERTS: cert.certFile, SYNCHUB_LOG_LEVEL: 'info' });
    const bad = spawnAgent(tmp.dir, untrusting.path, ref, { SYNCHUB_LOG_LEVEL: 'info' });
    cleanups.push(() => good.proc.kill('SIGKILL'), () => bad.proc.kill('SIGKILL'));
    trusting.writer.create('issues', { id: 'over-tls', title: 'sent over wss' });
    await quiesce(ref, [trusting], 30_000);
    await checkConverged(ref, [trusting], tmp.dir);
    expect(await store.headSeq('p1')).toBe(1);

    // The other one never gets through, and says why.
    untrusting.writer.create('issues', { id: 'never', title: 'stays pending' });
    await delay(1_500);
    expect(untrusting.statusIfReady()?.pending ?? 1).toBe(1);
    expect(bad.stderr()).toMatch(/self[- ]signed|unable to verify|certificate/i);
    expect(await store.headSeq('p1')).toBe(1);
  });

  it('reloads a renewed certificate: new connections get it', async () => {
    const tmp: TempDir = tempDir('synchub-tls-');
    cleanups.push(() => tmp.cleanup());
    const first = makeCert(tmp.dir, 'first');
    const second = makeCert(tmp.dir, 'second');
    const live = { certFile: join(tmp.dir, 'live-cert.pem'), keyFile: join(tmp.dir, 'live-key.pem') };
    copyFileSync(first.certFile, live.certFile);
    copyFileSync(first.keyFile, live.keyFile);
    const h: TestHub = await startHub({ options: { tls: live } });
    cleanups.push(() => h.close());
    expect(await peerFingerprint(h.port, first.certFile)).toBe(first.fingerprint);
    copyFileSync(second.certFile, live.certFile);
    copyFileSync(second.keyFile, live.keyFile);
    h.hub.reloadTls();
    expect(await peerFingerprint(h.port, second.certFile)).toBe(second.fingerprint);
  });
});
