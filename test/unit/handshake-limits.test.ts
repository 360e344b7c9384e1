// What strangers may cost us before they authenticate, one piece at a time on
// a ManualClock: the frame limit before and after the handshake, the
// handshake caps (global, per source, oldest first), the drop window, the
// rate-limited summary, and the health and status wording of the pressure.

import t from 'tap';
import { ManualClock } from '../../common/clock';
import { renderConnections, renderStatus } from '../../cli/render-status';
import {
  HANDSHAKE_DROP_LOG_INTERVAL_MS, HANDSHAKE_DROP_WINDOW_MS, HANDSHAKE_DROPS_WARN_COUNT, MAX_CONTROL_MESSAGE_BYTES,
  MAX_HANDSHAKE_MESSAGE_BYTES,
} from '../../router/mesh/constants';
import { frame, FrameDecoder } from '../../router/mesh/framing';
import { HandshakeLimits, handshakeSource } from '../../router/mesh/handshake-limits';
import { encodeHello, encodeSealedAuth, decodeSealedAuth, MAX_PASSWORDS, SHARE_BYTES } from '../../router/mesh/handshake-messages';
import { healthWarnings } from '../../router/mesh/health';
import type { HandshakePressure } from '../../router/mesh/status';
import { sampleStatus } from './sample-status';

function header(len: number): Uint8Array {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, len);
  return h;
}

t.test('framing: before the handshake, a length over the small limit is refused from its 4 header bytes alone', async (t) => {
  const d = new FrameDecoder(MAX_HANDSHAKE_MESSAGE_BYTES);
  // What the attack announced: just under the old 8 MiB limit. Nothing of the
  // payload has arrived, so nothing can have been allocated for it.
  d.push(header(MAX_CONTROL_MESSAGE_BYTES - 16));
  t.throws(() => d.next(), { code: 'limit', message: /8388592, over the limit of 2048/ });

  const exact = new FrameDecoder(MAX_HANDSHAKE_MESSAGE_BYTES);
  exact.push(header(MAX_HANDSHAKE_MESSAGE_BYTES + 1));
  t.throws(() => exact.next(), { code: 'limit' }, 'one byte over is refused');

  const fits = new FrameDecoder(MAX_HANDSHAKE_MESSAGE_BYTES);
  fits.push(frame(new Uint8Array(MAX_HANDSHAKE_MESSAGE_BYTES)));
  t.equal(fits.next()?.length, MAX_HANDSHAKE_MESSAGE_BYTES, 'exactly the limit is accepted');
});

t.test('framing: the limit rises at the frame that completes the handshake, even within one chunk', async (t) => {
  const d = new FrameDecoder(MAX_HANDSHAKE_MESSAGE_BYTES);
  const big = new Uint8Array(64 * 1024).fill(7);
  d.push(new Uint8Array([...frame(Uint8Array.of(1, 2)), ...frame(big)]));
  t.same([...d.next()!], [1, 2], 'the handshake message comes out first');
  d.setMaxPayloadBytes(MAX_CONTROL_MESSAGE_BYTES);
  t.equal(d.next()?.length, big.length, 'the large message after it passes under the raised limit');
  t.equal(d.next(), null);

  const strict = new FrameDecoder(MAX_HANDSHAKE_MESSAGE_BYTES);
  strict.push(new Uint8Array([...frame(Uint8Array.of(1, 2)), ...frame(big)]));
  strict.next();
  t.throws(() => strict.next(), { code: 'limit' }, 'without the raise the same bytes are refused');
});

t.test('framing: the pre-handshake limit holds every message the handshake codecs accept', async (t) => {
  const hello = encodeHello({ minVersion: 3, maxVersion: 3, nonce: new Uint8Array(32), shares: Array.from({ length: MAX_PASSWORDS }, () => new Uint8Array(SHARE_BYTES)), ciphers: 0 });
  t.ok(hello.length <= MAX_HANDSHAKE_MESSAGE_BYTES, `largest Hello (${hello.length} bytes) fits`);
  // The largest Auth the decoder accepts: every pairing of passwords, each sealed identity at its cap.
  const pairings = MAX_PASSWORDS * MAX_PASSWORDS;
  const auth = encodeSealedAuth(Array.from({ length: pairings }, () => new Uint8Array(256)));
  t.equal(decodeSealedAuth(auth, pairings).length, pairings, 'the codec accepts it');
  t.ok(auth.length <= MAX_HANDSHAKE_MESSAGE_BYTES, `largest Auth (${auth.length} bytes) fits`);
});

t.test('handshake caps: per source, the oldest of that source goes; other sources keep theirs', async (t) => {
  const clock = new ManualClock();
  const limits = new HandshakeLimits<string>({ maxInProgress: 10, maxPerSource: 3 });
  t.same(limits.admit('b1', '10.0.0.2', clock.now()), []);
  for (const k of ['a1', 'a2', 'a3']) t.same(limits.admit(k, '10.0.0.1', clock.now()), []);
  t.same(limits.admit('a4', '10.0.0.1', clock.now()), ['a1'], 'a fourth from one source drops its oldest');
  t.same(limits.admit('a5', '10.0.0.1', clock.now()), ['a2']);
  t.equal(limits.pressure(clock.now()).inProgress, 4, 'b1 and three of 10.0.0.1');
  t.equal(limits.pressure(clock.now()).evictedLastMinute, 2);
  t.notOk(limits.failed('a1', clock.now()), 'a dropped handshake closing later is not counted twice');
  t.equal(limits.pressure(clock.now()).droppedLastMinute, 2);
});

t.test('handshake caps: globally, the oldest handshake goes first; completed ones free their slot uncounted', async (t) => {
  const clock = new ManualClock();
  const limits = new HandshakeLimits<number>({ maxInProgress: 4, maxPerSource: 4 });
  for (let i = 0; i < 4; i++) {
    t.same(limits.admit(i, `10.0.1.${i}`, clock.now()), []);
    clock.advance(10);
  }
  limits.completed(1);
  t.same(limits.admit(4, '10.0.1.4', clock.now()), [], 'a completed handshake made room');
  t.same(limits.admit(5, '10.0.1.5', clock.now()), [0], 'then the oldest in progress is dropped');
  t.same(limits.admit(6, '10.0.1.6', clock.now()), [2]);
  const p = limits.pressure(clock.now());
  t.same(p, { inProgress: 4, maxInProgress: 4, maxPerSource: 4, droppedLastMinute: 2, evictedLastMinute: 2 });
  t.same(limits.counters, { handshakesDropped: 2, handshakesEvicted: 2 });
  t.ok(limits.failed(3, clock.now()), 'a handshake that times out or breaks is counted as dropped');
  t.equal(limits.pressure(clock.now()).droppedLastMinute, 3);
  t.equal(limits.pressure(clock.now()).evictedLastMinute, 2, 'but not as dropped at a cap');
  limits.completed(3);
  t.equal(limits.pressure(clock.now()).inProgress, 3, 'and it is gone');
});

t.test('handshake caps: IPv6 sources count per /64, IPv4 per address', async (t) => {
  t.equal(handshakeSource('fd00:1:2:3::1'), handshakeSource('fd00:1:2:3:ffff::9'));
  t.not(handshakeSource('fd00:1:2:3::1'), handshakeSource('fd00:1:2:4::1'));
  t.not(handshakeSource('10.0.0.1'), handshakeSource('10.0.0.2'));
  const limits = new HandshakeLimits<string>({ maxInProgress: 64, maxPerSource: 2 });
  limits.admit('x', 'fd00::1', 0);
  limits.admit('y', 'fd00::2', 0);
  t.same(limits.admit('z', 'fd00::3', 0), ['x'], 'a third address of the same /64 drops the oldest');
});

t.test('drops are counted over a sliding minute; the log summary comes at most once per interval', async (t) => {
  const clock = new ManualClock(0);
  const limits = new HandshakeLimits<number>({ maxInProgress: 2, maxPerSource: 2 });
  t.equal(limits.summaryDue(clock.now()), null, 'nothing to report');
  for (let i = 0; i < 5; i++) limits.admit(i, `10.0.0.${i}`, clock.now());
  t.same(limits.summaryDue(clock.now()), { dropped: 3, evicted: 3, inProgress: 2 }, 'the first drops are reported at once');
  clock.advance(HANDSHAKE_DROP_LOG_INTERVAL_MS / 2);
  limits.failed(3, clock.now());
  t.equal(limits.summaryDue(clock.now()), null, 'and then not again within the interval');
  clock.advance(HANDSHAKE_DROP_LOG_INTERVAL_MS / 2 - 1);
  t.equal(limits.summaryDue(clock.now()), null);
  clock.advance(1);
  t.same(limits.summaryDue(clock.now()), { dropped: 1, evicted: 0, inProgress: 1 }, 'one line for everything since');
  t.equal(limits.pressure(clock.now()).droppedLastMinute, 1, 'the first drops left the window, the later one is still in it');
  clock.advance(HANDSHAKE_DROP_WINDOW_MS);
  t.equal(limits.pressure(clock.now()).droppedLastMinute, 0, 'a quiet minute later the window is empty');
  t.equal(limits.counters.handshakesDropped, 4, 'the totals stay');
});

function pressure(over: Partial<HandshakePressure>): HandshakePressure {
  return { inProgress: 0, maxInProgress: 64, maxPerSource: 8, droppedLastMinute: 0, evictedLastMinute: 0, ...over };
}

t.test('health and status name the pressure, and stay quiet without it', async (t) => {
  const codes = (h: HandshakePressure): string[] => healthWarnings(sampleStatus({ health: [], handshakes: h }), 0).map((w) => w.code);
  t.notOk(codes(pressure({ inProgress: 3, droppedLastMinute: 5 })).includes('handshake-pressure'), 'a scan or a misconfigured peer is not pressure');
  t.ok(codes(pressure({ inProgress: 64 })).includes('handshake-pressure'), 'every slot taken');
  t.ok(codes(pressure({ inProgress: 10, droppedLastMinute: 30, evictedLastMinute: 1 })).includes('handshake-pressure'), 'a cap was hit');
  t.ok(codes(pressure({ droppedLastMinute: HANDSHAKE_DROPS_WARN_COUNT })).includes('handshake-pressure'), 'many failures');

  const status = sampleStatus({ handshakes: pressure({ inProgress: 64, droppedLastMinute: 1234, evictedLastMinute: 1200 }) });
  status.health = healthWarnings(status, 0);
  const text = renderStatus(status);
  t.match(text, /^ +Handshakes: 64\/64 in progress, 1234 dropped in the last minute \(1200 at the cap, 8 per source\)$/m);
  t.match(text, /\[warning\] handshake-pressure: 64\/64 inbound handshakes in progress, 1234 dropped in the last minute/);
  t.notMatch(renderStatus(sampleStatus({ handshakes: pressure({}) })), /Handshakes:/, 'no line when nothing is going on');
});

t.test('status: a handshake refused over the password reads as refused, with the reason, not as unencrypted', async (t) => {
  const refused = (failure: 'password-mismatch' | 'password-local-only' | 'password-remote-only'): string =>
    renderConnections(sampleStatus({
      connections: [{
        address: '10.0.0.3:52144', outbound: false, state: 'failed', peer: null, nickname: null, encrypted: false,
        info: 'the reason in full', failure, sinceMs: 0,
      }],
    }));
  t.match(refused('password-mismatch'), /^<- 10\.0\.0\.3:52144 +failed +refused: wrong password +- +the reason in full$/m);
  t.match(refused('password-local-only'), /refused: peer has no password/);
  t.match(refused('password-remote-only'), /refused: we have no password/);
  for (const f of ['password-mismatch', 'password-local-only', 'password-remote-only'] as const) {
    t.notMatch(refused(f), /unencrypted/, `${f} is not shown as unencrypted`);
  }
});
