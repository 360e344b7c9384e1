// The peer's key and name in the data directory (router/mesh/identity.ts):
// made once and kept owner-only, the name derived from it, --name only a
// check, a damaged key file refused rather than replaced.

import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KEY_FILE, loadPeerIdentity } from '../../router/mesh/identity';
import { peerNameOfKey } from '../../router/mesh/peer-key';
import type { PeerName } from '../../router/mesh/peer-name';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-identity-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a key is made once, kept 0600, and the name is the one it derives', async (t) => {
  const dir = tempDir(t);
  const first = loadPeerIdentity(dir, null);
  t.equal(first.key.name, peerNameOfKey(first.key.publicKey));
  t.equal(first.previous, null);
  t.equal(fs.statSync(path.join(dir, KEY_FILE)).mode & 0o777, 0o600, 'the key file is owner-only');
  t.equal(fs.readFileSync(path.join(dir, 'peer-name'), 'utf8').trim(), first.key.name, 'peer-name says the name');
  const again = loadPeerIdentity(dir, null);
  t.equal(again.key.name, first.key.name, 'the same key on the next start');
  t.equal(loadPeerIdentity(dir, first.key.name).key.name, first.key.name, '--name with our own name is fine');
  t.not(loadPeerIdentity(tempDir(t), null).key.name, first.key.name, 'another data directory, another name');
});

t.test('--name cannot choose a name; a damaged key is not replaced', async (t) => {
  const dir = tempDir(t);
  const { key } = loadPeerIdentity(dir, null);
  const other = '02:00:00:00:00:01' as PeerName;
  t.throws(() => loadPeerIdentity(dir, other), { name: 'RouterError', code: 'config', message: /not this peer's name/ });
  fs.writeFileSync(path.join(dir, KEY_FILE), 'not a key\n');
  t.throws(() => loadPeerIdentity(dir, null), { name: 'RouterError', code: 'config', message: /is not a peer key/ });
  t.equal(fs.readFileSync(path.join(dir, KEY_FILE), 'utf8'), 'not a key\n', 'left as it was');
  t.ok(key.name);
});

t.test('a data directory from before keys: a new name, the old one reported', async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'peer-name'), '02:00:00:00:00:07\n');
  const { key, previous } = loadPeerIdentity(dir, null);
  t.equal(previous, '02:00:00:00:00:07');
  t.equal(fs.readFileSync(path.join(dir, 'peer-name'), 'utf8').trim(), key.name);
  t.equal(loadPeerIdentity(dir, null).previous, null, 'reported once');
});
