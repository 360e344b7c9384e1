// The pure parts of forwarder hardening and of the TCP deadline, without
// sockets: 0x20 case randomisation (which bytes change, how evenly), the answer
// check as a table of forgeries (each must be refused for the named reason),
// the upstream query and the client's view of the answer, and TcpDeadline on a
// ManualClock (trickled bytes never extend a connection's life).

import { randomBytes } from 'node:crypto';
import * as packet from 'dns-packet';
import t from 'tap';
import { ManualClock } from '../../common/clock';
import { parseQuery } from '../../dns/message';
import { TcpDeadline } from '../../dns/tcp-deadline';
import type { AnswerCheck, UpstreamExpectation } from '../../dns/upstream-query';
import { checkAnswer, clientAnswer, randomiseCase, upstreamQuery } from '../../dns/upstream-query';

function query(name: string, id = 7, type: packet.RecordType = 'A'): { raw: Buffer; question: Uint8Array } {
  const raw = packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ name, type }] });
  const parsed = parseQuery(raw);
  if (parsed.kind !== 'query') throw new Error(`not a query: ${name}`);
  return { raw, question: parsed.query.questionBytes };
}

const fill = (byte: number) => (n: number): Uint8Array => new Uint8Array(n).fill(byte);
const latin1 = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

t.test('randomiseCase: letters only, one random bit each; lengths, digits, type and class untouched', async (t) => {
  const { question } = query('Web-01.Example.COM', 1, 'AAAA');
  const upper = randomiseCase(question, fill(0x00));
  const lower = randomiseCase(question, fill(0xff));
  t.equal(latin1(upper), latin1(question).replace(/[a-z]/g, (c) => c.toUpperCase()), 'bit 0: upper case');
  t.equal(latin1(lower), latin1(question).replace(/[A-Z]/g, (c) => c.toLowerCase()), 'bit 1: lower case');
  t.equal(upper.length, question.length);
  t.same([...upper.subarray(-4)], [...question.subarray(-4)], 'qtype and qclass as they were');
  t.same([...question], [...query('Web-01.Example.COM', 1, 'AAAA').question], 'the input is not modified');
  // Label length bytes (6, 7, 3) look like control characters and stay as they are.
  t.same([upper[0], upper[7], upper[15]], [6, 7, 3]);

  // With the CSPRNG: every letter position takes both cases over 200 draws, roughly evenly.
  const { question: q2 } = query('abcdefghijklmnopqrstuvwxyz.example');
  const lowerCount = new Array<number>(q2.length).fill(0);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const r = randomiseCase(q2, randomBytes);
    seen.add(latin1(r));
    t.equal(latin1(r).toLowerCase(), latin1(q2), 'same name ignoring case');
    r.forEach((b, j) => { if (b >= 0x61 && b <= 0x7a) lowerCount[j]!++; });
  }
  t.equal(seen.size, 200, '200 draws, 200 different casings (33 letters: 2^33 choices)');
  const letters = [...q2.keys()].filter((j) => /[a-z]/.test(String.fromCharCode(q2[j]!)));
  t.ok(letters.every((j) => lowerCount[j]! > 60 && lowerCount[j]! < 140), `each letter lower in 60..140 of 200: ${letters.map((j) => lowerCount[j]).join(',')}`);

  const root = query('').question;
  t.same([...randomiseCase(root, randomBytes)], [...root], 'the root name has nothing to randomise');
});

t.test('checkAnswer: only our id and our question, byte for byte', async (t) => {
  const { raw, question } = query('www.example.org', 99);
  const exp: UpstreamExpectation = { id: 0xbeef, question: randomiseCase(question, fill(0b10101010)) };
  const sent = upstreamQuery(raw, exp);
  t.equal(sent.readUInt16BE(0), 0xbeef, 'our id goes upstream');
  t.equal(latin1(sent.subarray(12, 12 + question.length)), latin1(exp.question), 'our casing goes upstream');
  t.equal(sent.length, raw.length);
  t.equal(raw.readUInt16BE(0), 99, "the client's bytes are not modified");

  const sentName = packet.decode(sent).questions![0]!.name;
  const answer = (over: { id?: number; name?: string; type?: packet.RecordType; klass?: packet.RecordClass; questions?: number }): Buffer => {
    const name = over.name ?? sentName;
    const qs = Array.from({ length: over.questions ?? 1 }, () => ({ name, type: over.type ?? 'A', class: over.klass ?? 'IN' }));
    return packet.encode({ type: 'response', id: over.id ?? 0xbeef, flags: packet.RECURSION_AVAILABLE, questions: qs, answers: [{ type: 'A', name, ttl: 5, data: '192.0.2.1' }] });
  };
  const flipped = sentName.replace(/[a-z]/i, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));
  const asQuery = answer({});
  asQuery[2] = asQuery[2]! & 0x7f;
  const rows: [string, Uint8Array, AnswerCheck][] = [
    ['the real answer', answer({}), 'ok'],
    ['a runt', answer({}).subarray(0, 11), 'short'],
    ['a query (QR clear)', asQuery, 'not-a-response'],
    ['another id', answer({ id: 0xbeee }), 'wrong-id'],
    ["the client's id", answer({ id: 99 }), 'wrong-id'],
    ['one letter in the other case', answer({ name: flipped }), 'wrong-question'],
    ['all lower case (a server that normalises)', answer({ name: sentName.toLowerCase() }), 'wrong-question'],
    ['another name', answer({ name: 'www.example.net' }), 'wrong-question'],
    ['another type', answer({ type: 'AAAA' }), 'wrong-question'],
    ['another class', answer({ klass: 'CH' }), 'wrong-question'],
    ['no question', answer({ questions: 0 }), 'wrong-question'],
    ['two questions', answer({ questions: 2 }), 'wrong-question'],
    ['cut inside the question', answer({}).subarray(0, 12 + exp.question.length - 1), 'wrong-question'],
  ];
  for (const [what, msg, want] of rows) t.equal(checkAnswer(msg, exp), want, what);

  const back = clientAnswer(answer({}), 99, question);
  const decoded = packet.decode(back);
  t.equal(decoded.id, 99, "the client's id");
  t.equal(decoded.questions![0]!.name, 'www.example.org', "the client's casing");
  t.same(decoded.answers!.map((a) => (a as { data: string }).data), ['192.0.2.1'], 'the records untouched');
});

t.test('TcpDeadline: idle counts from complete queries and answers; a started query has its own cap', async (t) => {
  const clock = new ManualClock(0);
  let expired = 0;
  const d = new TcpDeadline(clock, 1000, 300, () => { expired++; });
  clock.advance(900);
  d.queryComplete();
  clock.advance(900);
  t.equal(expired, 0, 'a query every 900 ms keeps it open');
  d.queryComplete();
  d.partial();
  for (let i = 0; i < 2; i++) {
    clock.advance(100);
    d.partial();
  }
  clock.advance(99);
  t.equal(expired, 0, 'within the receive cap');
  clock.advance(1);
  t.equal(expired, 1, 'closed 300 ms after the first byte of an unfinished query, however many bytes followed');
  clock.advance(5000);
  t.equal(expired, 1, 'fires once');

  const idle = new TcpDeadline(clock, 1000, 300, () => { expired++; });
  clock.advance(999);
  idle.answered();
  clock.advance(999);
  t.equal(expired, 1, 'an answer going out counts as activity');
  clock.advance(1);
  t.equal(expired, 2, 'idle 1000 ms after the last answer');

  const late = new TcpDeadline(clock, 1000, 300, () => { expired++; });
  clock.advance(900);
  late.partial();
  t.equal(late.deadlineMs(), clock.now() + 100, 'a query started late still ends at the idle deadline');
  late.stop();
  clock.advance(5000);
  t.equal(expired, 2, 'stopped: never fires');
});
