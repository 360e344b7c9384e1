// A hand-built RouterStatus shared by the rendering, metrics and API tests:
// three peers, one established encrypted connection, one failed on a password
// mismatch, one still connecting, and a health warning.

import type { PeerName } from '../../router/mesh/peer-name';
import type { RouterStatus } from '../../router/mesh/status';

export const P1 = 'aa:00:00:00:00:01' as PeerName;
export const P2 = 'aa:00:00:00:00:02' as PeerName;
export const P3 = 'aa:00:00:00:00:03' as PeerName;

export function sampleStatus(overrides: Partial<RouterStatus> = {}): RouterStatus {
  return {
    version: '0.1.0',
    name: P1,
    nickname: 'host1',
    incarnation: 7,
    port: 6783,
    encryption: true,
    discovery: true,
    connLimit: 100,
    startedMs: 1_700_000_000_000,
    peers: [
      { name: P1, nickname: 'host1', incarnation: 7, version: 3, reachable: true, connections: [{ name: P2, address: '10.0.0.2:6783', outbound: true, established: true }] },
      { name: P2, nickname: 'host2', incarnation: 2, version: 5, reachable: true, connections: [{ name: P1, address: '10.0.0.1:41000', outbound: false, established: true }] },
      { name: P3, nickname: 'host3', incarnation: 1, version: 1, reachable: false, connections: [] },
    ],
    connections: [
      { address: '10.0.0.2:6783', outbound: true, state: 'established', peer: P2, nickname: 'host2', encrypted: true, info: '', sinceMs: 1_700_000_001_000 },
      {
        address: '10.0.0.3:52144',
        outbound: false,
        state: 'failed',
        peer: null,
        nickname: null,
        encrypted: false,
        info: 'password mismatch: the remote peer uses a different password',
        failure: 'password-mismatch',
        sinceMs: 1_700_000_002_000,
      },
      { address: '10.0.0.4:6783', outbound: true, state: 'connecting', peer: null, nickname: null, encrypted: false, info: '', sinceMs: 1_700_000_003_000 },
    ],
    targets: [
      { address: '10.0.0.2:6783', direct: true, state: 'connected', attempts: 1, nextAttemptMs: null, lastError: '' },
      { address: '10.0.0.4:6783', direct: false, state: 'failed', attempts: 3, nextAttemptMs: 1_700_000_010_000, lastError: 'connection refused' },
    ],
    channels: ['topology', 'ipam'],
    counters: { rx_bytes: 1234, 'rx_dropped{reason="auth"}': 2, 'rx_dropped{reason="replay"}': 1, 'conn-failures': 4 },
    health: [{ code: 'peer-unreachable', severity: 'warning', text: 'host3 is unreachable' }],
    ...overrides,
  };
}
