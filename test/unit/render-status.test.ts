import t from 'tap';
import { renderConnections, renderPeers, renderStatus, renderTargets, sanitiseText } from '../../cli/render-status';
import { P1, P2, sampleStatus } from './sample-status';

t.test('overview: identity, counts, health; encrypted mesh carries no warning', async (t) => {
  const out = renderStatus(sampleStatus());
  t.match(out, /^ +Version: 0\.1\.0$/m);
  t.match(out, new RegExp(`^ +Name: ${P1}\\(host1\\)$`, 'm'));
  t.match(out, /^ +Encryption: enabled$/m);
  t.match(out, /^ +PeerDiscovery: enabled$/m);
  t.match(out, /^ +Targets: 2$/m);
  t.match(out, /^ +Connections: 3 \(1 established, 1 connecting, 1 failed\)$/m);
  t.match(out, /^ +Peers: 3 \(with 2 established connections, 1 unreachable\)$/m);
  t.match(out, /^ +Health: 1 warning$/m);
  t.match(out, /\[warning\] peer-unreachable: host3 is unreachable/);
  t.notMatch(out, /UNENCRYPTED/);
});

t.test('overview: port security, when the daemon reports it', async (t) => {
  t.notMatch(renderStatus(sampleStatus()), /PortSecurity/, 'a bare router says nothing');
  const on = { ...sampleStatus(), portSecurity: { ports: 3, unguarded: 1 } };
  t.match(renderStatus(on), /^ +PortSecurity: enabled, 3 container ports guarded, 1 let through \(attached with port security off\)$/m);
  t.match(renderStatus({ ...sampleStatus(), portSecurity: { ports: 1, unguarded: 0 } }), /^ +PortSecurity: enabled, 1 container port guarded$/m);
  t.match(renderStatus({ ...sampleStatus(), portSecurity: null }), /^ +PortSecurity: disabled \(--no-port-security\)/m);
});

t.test('overview: an unencrypted mesh is flagged loudly', async (t) => {
  const out = renderStatus(sampleStatus({ encryption: false, health: [] }));
  t.match(out, /^ +Encryption: DISABLED$/m);
  t.match(out, /WARNING: this mesh is UNENCRYPTED/);
  t.match(out, /--password/);
  t.match(out, /^ +Health: ok$/m);
});

t.test('overview: IPAM and DNS lines from their subsystems go before the health list, sanitised', async (t) => {
  const out = renderStatus(sampleStatus(), [
    { label: 'IPAM', value: 'ready, range 10.32.0.0/12, 12 of 262144 addresses here in use, 25.0% of the range owned here' },
    { label: 'DNS', value: 'weave.local, answering containers on 169.254.7.1, 2 names\x1b[2J' },
  ]);
  t.match(out, /^ +IPAM: ready, range 10\.32\.0\.0\/12, 12 of 262144 addresses here in use, 25\.0% of the range owned here$/m);
  t.match(out, /^ +DNS: weave\.local, answering containers on 169\.254\.7\.1, 2 names\\x1b\[2J$/m);
  t.ok(out.indexOf(' DNS:') < out.indexOf(' Health:'));
  t.equal(out.match(/^ +IPAM:/m)?.[0].length, out.match(/^ +Health:/m)?.[0].length, 'labels aligned');
  t.notMatch(renderStatus(sampleStatus()), /IPAM|DNS:/, 'the status port renders the router alone');
});

t.test('connections: arrows, state, encryption, peer and the failure reason', async (t) => {
  const lines = renderConnections(sampleStatus()).trimEnd().split('\n');
  t.equal(lines.length, 3);
  t.match(lines[0], new RegExp(`^-> 10\\.0\\.0\\.2:6783 +established +encrypted +${P2}\\(host2\\)$`));
  t.match(lines[1], /^<- 10\.0\.0\.3:52144 +failed +refused: wrong password +- +password mismatch: the remote peer uses a different password$/);
  t.match(lines[2], /^-> 10\.0\.0\.4:6783 +connecting +unencrypted +-$/);
  // Columns line up: the state column starts at the same offset on every line.
  const at = lines.map((l) => l.search(/(established|failed|connecting)/));
  t.equal(new Set(at).size, 1);
});

t.test('peers: each peer with nickname and the connections it reports', async (t) => {
  const out = renderPeers(sampleStatus());
  t.match(out, new RegExp(`^${P1}\\(host1\\)  \\[this peer\\]\\n   -> 10\\.0\\.0\\.2:6783 +${P2}\\(host2\\) +established$`, 'm'));
  t.match(out, new RegExp(`^${P2}\\(host2\\)\\n   <- 10\\.0\\.0\\.1:41000 +${P1}\\(host1\\) +established$`, 'm'));
  t.match(out, /^aa:00:00:00:00:03\(host3\)  \[unreachable\]$/m);
});

t.test('targets: state, discovered, attempts, next retry and last error', async (t) => {
  const lines = renderTargets(sampleStatus(), { nowMs: 1_700_000_000_000 }).trimEnd().split('\n');
  t.match(lines[0], /^10\.0\.0\.2:6783 +connected$/);
  t.match(lines[1], /^10\.0\.0\.4:6783 +failed +discovered, 3 attempts, next in 10s, last error: connection refused$/);
  t.match(renderTargets(sampleStatus()), /next at 2023-11-14T22:13:30\.000Z/);
});

t.test('text from remote peers cannot carry terminal escapes', async (t) => {
  t.equal(sanitiseText('ok\x1b[31mred\u202e'), 'ok\\x1b[31mred\\u202e');
  const s = sampleStatus();
  const bad = { ...s, connections: [{ ...s.connections[1]!, info: 'evil\x1b]0;pwned\x07' }] };
  const out = renderConnections(bad);
  t.notMatch(out, /\x1b/);
  t.match(out, /evil\\x1b\]0;pwned\\x07/);
  const peers = renderPeers({ ...s, peers: [{ ...s.peers[0]!, nickname: 'a\nb' }] });
  t.notMatch(peers, /a\nb/);
});

t.test('key epochs and a password roll: each connection shows its keys, the overview names peers on the old password', async (t) => {
  const base = sampleStatus();
  const rolled = sampleStatus({
    passwordRoll: true,
    connections: base.connections.map((c) => (c.state === 'established' ? { ...c, keyEpoch: 7, keyAgeMs: 41_600, oldPassword: true } : c)),
  });
  t.match(renderConnections(rolled).split('\n')[0], /established +encrypted, key epoch 7 \(42s old\), OLD PASSWORD +/);
  t.match(renderStatus(rolled), new RegExp(`password roll: 1 peer still on the old password: ${P2}\\(host2\\)`));
  const done = sampleStatus({ passwordRoll: true, connections: base.connections.map((c) => ({ ...c, keyEpoch: 1, keyAgeMs: 0 })) });
  t.match(renderStatus(done), /password roll: every connected peer uses the new password/);
  t.notMatch(renderStatus(base), /password roll/, 'no roll, no line');
  const aes = sampleStatus({ connections: base.connections.map((c) => (c.state === 'established' ? { ...c, keyEpoch: 0, keyAgeMs: 0, cipher: 'aes-256-gcm' as const } : c)) });
  t.match(renderConnections(aes).split('\n')[0], /established +encrypted \(aes-256-gcm\), key epoch 0 /, 'the sleeve cipher per connection');
});
