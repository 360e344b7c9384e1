// The query core (dns/answer.ts, dns/message.ts): every record type, case,
// NXDOMAIN versus NODATA, bare names, reverse lookups, round robin, truncation
// with TC (plain 512 bytes and the EDNS size), malformed and random packets
// (never a crash, FORMERR where a reply is possible), and what goes upstream.

import * as packet from 'dns-packet';
import t from 'tap';
import type { QueryOutcome, RecordSource } from '../../dns/answer';
import { handleQuery, servfail } from '../../dns/answer';
import { parseQuery } from '../../dns/message';
import { SeededRng, randomInt } from '../../common/rng';

const CFG = { domain: 'weave.local', ttlS: 1 };

function source(records: Record<string, string[]>): RecordSource {
  return {
    lookup: (n) => [...(records[n] ?? [])].sort(),
    reverse: (a) => Object.keys(records).filter((n) => records[n]!.includes(a)).sort(),
    hasNamesBelow: (n) => Object.keys(records).some((k) => k.endsWith(`.${n}`) && records[k]!.length > 0),
  };
}

const RECORDS = source({
  'web.weave.local': ['10.32.0.1', '10.32.0.2', 'fd00::1'],
  'db.weave.local': ['10.32.0.9'],
  'v6only.weave.local': ['fd00::9'],
  'a.b.weave.local': ['10.32.0.7'],
  'big.weave.local': Array.from({ length: 64 }, (_, i) => `10.32.1.${i + 1}`),
});

function query(name: string, type: packet.RecordType | number, opts: { id?: number; edns?: number; ednsVersion?: number; klass?: packet.RecordClass; rd?: boolean } = {}): Buffer {
  const q = packet.encode({
    type: 'query', id: opts.id ?? 4242, flags: opts.rd === false ? 0 : packet.RECURSION_DESIRED,
    questions: [{ name, type: typeof type === 'number' ? 'A' : type, class: opts.klass ?? 'IN' }],
    additionals: opts.edns !== undefined
      ? [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, extendedRcode: 0, ednsVersion: opts.ednsVersion ?? 0, flags: 0, flag_do: false, options: [] }]
      : [],
  });
  if (typeof type === 'number') {
    // A type dns-packet has no name for: patch the qtype in place.
    const off = 12 + Buffer.byteLength(name) + 2;
    q.writeUInt16BE(type, off);
  }
  return q;
}

function ask(bytes: Buffer, transport: 'udp' | 'tcp' = 'udp', seed = 1): QueryOutcome {
  return handleQuery(bytes, transport, CFG, RECORDS, new SeededRng(seed));
}

function reply(o: QueryOutcome): packet.DecodedPacket & { rcode?: string } {
  if (o.kind !== 'reply') throw new Error(`expected a reply, got ${o.kind}`);
  return packet.decode(o.bytes) as packet.DecodedPacket & { rcode?: string };
}

function data(p: packet.DecodedPacket): string[] {
  return (p.answers ?? []).map((a) => `${a.type} ${String((a as { data: unknown }).data)}`).sort();
}

t.test('A, AAAA, ANY for a known name; TTL, id, flags, question echoed as asked', async (t) => {
  const a = reply(ask(query('WeB.Weave.Local', 'A', { id: 777 })));
  t.equal(a.id, 777);
  t.equal(a.type, 'response');
  t.equal(a.rcode, 'NOERROR');
  t.ok(a.flag_aa, 'authoritative');
  t.ok(a.flag_rd && a.flag_ra, 'RD echoed, RA set');
  t.notOk(a.flag_tc);
  t.same(a.questions, [{ name: 'WeB.Weave.Local', type: 'A', class: 'IN' }], 'question echoed with its case');
  t.same(data(a), ['A 10.32.0.1', 'A 10.32.0.2']);
  t.ok(a.answers!.every((x) => (x as { ttl: number }).ttl === 1 && x.name === 'WeB.Weave.Local'));
  t.same(data(reply(ask(query('web.weave.local.', 'AAAA')))), ['AAAA fd00::1']);
  t.same(data(reply(ask(query('web.weave.local', 255)))), ['A 10.32.0.1', 'A 10.32.0.2', 'AAAA fd00::1']);
  t.same(data(reply(ask(query('v6only.weave.local', 'AAAA')))), ['AAAA fd00::9']);
});

t.test('NXDOMAIN for an unknown name, NODATA (NOERROR, no answers) for a type we lack; both with our SOA', async (t) => {
  const nx = reply(ask(query('nobody.weave.local', 'A')));
  t.equal(nx.rcode, 'NXDOMAIN');
  t.equal(nx.answers!.length, 0);
  t.equal(nx.authorities![0]?.type, 'SOA');
  t.equal((nx.authorities![0] as packet.SoaAnswer).data.minimum, 1, 'negative TTL is ours');
  for (const [name, type] of [['web.weave.local', 'MX'], ['web.weave.local', 'TXT'], ['db.weave.local', 'AAAA'], ['v6only.weave.local', 'A']] as const) {
    const r = reply(ask(query(name, type)));
    t.equal(r.rcode, 'NOERROR', `${name} ${type}`);
    t.equal(r.answers!.length, 0);
    t.equal(r.authorities![0]?.type, 'SOA');
  }
  t.equal(reply(ask(query('b.weave.local', 'A'))).rcode, 'NOERROR', 'a name with names below it exists');
  t.equal(reply(ask(query('weave.local', 'A'))).rcode, 'NOERROR', 'the domain itself exists');
  const soa = reply(ask(query('weave.local', 'SOA')));
  t.equal(soa.answers![0]?.type, 'SOA');
  t.equal(reply(ask(query('x.nobody.weave.local', 'A'))).rcode, 'NXDOMAIN');
  t.equal(reply(ask(query('web.weave.local', 'A', { klass: 'CH' }))).rcode, 'REFUSED', 'only class IN in our zone');
});

t.test('bare names we hold are answered; other names go upstream', async (t) => {
  t.same(data(reply(ask(query('db', 'A')))), ['A 10.32.0.9']);
  t.equal(reply(ask(query('DB', 'A'))).questions![0]!.name, 'DB');
  for (const name of ['nobody', 'example.com', 'web.weave.locall', 'com', '.']) {
    const o = ask(query(name, 'A'));
    t.equal(o.kind, 'forward', `${name} is forwarded`);
  }
});

t.test('PTR for addresses we hold; others go upstream', async (t) => {
  const r = reply(ask(query('9.0.32.10.in-addr.arpa', 'PTR')));
  t.same(data(r), ['PTR db.weave.local']);
  t.ok(r.flag_aa);
  const v6 = reply(ask(query('9.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa', 'PTR')));
  t.same(data(v6), ['PTR v6only.weave.local']);
  t.equal(reply(ask(query('9.0.32.10.in-addr.arpa', 'A'))).rcode, 'NOERROR', 'known address, other type: NODATA');
  t.equal(ask(query('1.1.1.10.in-addr.arpa', 'PTR')).kind, 'forward');
  t.equal(ask(query('32.10.in-addr.arpa', 'PTR')).kind, 'forward');
});

t.test('round robin: several addresses come back in varying order', async (t) => {
  const orders = new Set<string>();
  for (let seed = 1; seed <= 30; seed++) {
    const r = reply(ask(query('big.weave.local', 'A'), 'tcp', seed));
    t.equal(r.answers!.length, 64);
    orders.add(r.answers!.map((a) => (a as { data: string }).data).join(','));
  }
  t.ok(orders.size > 20, `${orders.size} distinct orders in 30 queries`);
});

t.test('truncation: TC over 512 bytes without EDNS, the EDNS size with it, nothing over TCP', async (t) => {
  const plain = ask(query('big.weave.local', 'A'));
  t.equal(plain.kind, 'reply');
  if (plain.kind !== 'reply') return;
  t.ok(plain.bytes.length <= 512, `${plain.bytes.length} bytes`);
  t.ok(plain.truncated);
  const p = reply(plain);
  t.ok(p.flag_tc, 'TC set');
  t.ok(p.answers!.length > 0 && p.answers!.length < 64, `${p.answers!.length} whole records fit`);

  const edns = ask(query('big.weave.local', 'A', { edns: 4096 }));
  if (edns.kind !== 'reply') return t.fail('no reply');
  t.ok(edns.bytes.length <= 1232, 'capped at our EDNS size');
  const e = reply(edns);
  t.ok(e.answers!.length > p.answers!.length, 'EDNS lets more through');
  const opt = e.additionals!.find((a) => a.type === 'OPT') as packet.OptAnswer | undefined;
  t.equal(opt?.udpPayloadSize, 1232, 'OPT echoed with our size');

  const small = ask(query('big.weave.local', 'A', { edns: 100 }));
  if (small.kind !== 'reply') return t.fail('no reply');
  t.ok(small.bytes.length <= 512 && small.bytes.length > 400, 'an EDNS size under 512 means 512');

  const tcp = reply(ask(query('big.weave.local', 'A'), 'tcp'));
  t.notOk(tcp.flag_tc);
  t.equal(tcp.answers!.length, 64);
  t.notOk(reply(ask(query('db.weave.local', 'A'))).flag_tc, 'small replies are not truncated');
});

t.test('malformed queries: silence when there is no header or it is a response, FORMERR/NOTIMP/BADVERS otherwise', async (t) => {
  t.same(ask(Buffer.alloc(5)), { kind: 'drop', why: 'short' });
  const resp = query('db.weave.local', 'A');
  resp[2] = resp[2]! | 0x80;
  t.same(ask(resp), { kind: 'drop', why: 'response' });

  const two = packet.encode({ type: 'query', id: 9, questions: [{ name: 'a', type: 'A' }, { name: 'b', type: 'A' }] });
  const r2 = reply(ask(two));
  t.equal(r2.rcode, 'FORMERR');
  t.equal(r2.id, 9);

  const cut = query('db.weave.local', 'A', { id: 31 }).subarray(0, 20);
  const r3 = reply(ask(Buffer.from(cut)));
  t.equal(r3.rcode, 'FORMERR');
  t.equal(r3.id, 31);
  t.equal(r3.questions!.length, 0, 'no question to echo');

  const loop = Buffer.from([0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  t.equal(reply(ask(loop)).rcode, 'FORMERR', 'a pointer in the question (here: to itself)');

  const update = query('db.weave.local', 'A');
  update[2] = (update[2]! & 0x87) | (5 << 3);
  const r4 = reply(ask(update));
  t.equal(r4.rcode, 'NOTIMP', 'opcode UPDATE');

  const badvers = ask(query('db.weave.local', 'A', { edns: 1232, ednsVersion: 1 }));
  if (badvers.kind !== 'reply') return t.fail('no reply');
  const bv = packet.decode(badvers.bytes);
  const opt = bv.additionals?.find((a) => a.type === 'OPT') as packet.OptAnswer | undefined;
  t.equal(((opt?.extendedRcode ?? 0) << 4) | (bv.flags! & 0xf), 16, 'BADVERS');

  const twoOpt = packet.encode({
    type: 'query', id: 3, questions: [{ name: 'db.weave.local', type: 'A' }],
    additionals: [1, 2].map(() => ({ type: 'OPT' as const, name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] })),
  });
  t.equal(reply(ask(twoOpt)).rcode, 'FORMERR', 'two OPT records');

  const unknownType = reply(ask(query('web.weave.local', 65280)));
  t.equal(unknownType.rcode, 'NOERROR', 'a type number nobody names');
  t.equal(parseQuery(query('web.weave.local', 65280)).kind, 'query');
});

t.test('hostile names and records: FORMERR, whichever bound they break', async (t) => {
  const header = (ar: number): Buffer => Buffer.from([0, 8, 1, 0, 0, 1, 0, 0, 0, 0, 0, ar]);
  const label = (n: number): Buffer => Buffer.concat([Buffer.from([n]), Buffer.alloc(n, 0x61)]);
  const tail = Buffer.from([0, 0, 1, 0, 1]);
  // Five labels of 60 bytes: 306 bytes of name, where 255 is the most there is.
  const long = Buffer.concat([header(0), ...Array.from({ length: 5 }, () => label(60)), tail]);
  t.equal(reply(ask(long)).rcode, 'FORMERR', 'a question name over 255 bytes');
  t.equal(parseQuery(long).kind, 'error');
  const name = Buffer.concat([label(2), tail]);
  // An OPT record whose data would run past the end of the message.
  const opt = (rdlength: number): Buffer => Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, rdlength >> 8, rdlength & 0xff]);
  t.equal(parseQuery(Buffer.concat([header(1), name, opt(0)])).kind, 'query', 'the same OPT record, honest, is taken');
  t.equal(reply(ask(Buffer.concat([header(1), name, opt(40), Buffer.alloc(4)]))).rcode, 'FORMERR', 'record data past the end');
  // An additional record whose name is a pointer to itself.
  const selfAt = 12 + name.length;
  const looped = Buffer.concat([header(1), name, Buffer.from([0xc0 | (selfAt >> 8), selfAt & 0xff, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0])]);
  t.equal(reply(ask(looped)).rcode, 'FORMERR', 'a record name pointing at itself');
});

t.test('SERVFAIL for a forwarded query that failed', async (t) => {
  const o = ask(query('example.com', 'A', { id: 55, edns: 1232 }));
  if (o.kind !== 'forward') return t.fail('expected forward');
  const r = packet.decode(servfail(o.query, 'udp')) as packet.DecodedPacket & { rcode?: string };
  t.equal(r.rcode, 'SERVFAIL');
  t.equal(r.id, 55);
  t.equal(r.questions![0]!.name, 'example.com');
  t.ok(r.additionals!.some((a) => a.type === 'OPT'));
});

t.test('fuzz: random and mutated packets never crash; every reply parses and carries the id', async (t) => {
  const seed = 8675309;
  const rng = new SeededRng(seed);
  const seeds = [query('web.weave.local', 'A'), query('db', 'AAAA', { edns: 4096 }), query('9.0.32.10.in-addr.arpa', 'PTR'), query('example.com', 'MX')];
  const counts = { reply: 0, forward: 0, drop: 0 };
  for (let i = 0; i < 20_000; i++) {
    let bytes: Buffer;
    if (i % 3 === 0) {
      bytes = Buffer.from(new Uint8Array(randomInt(rng, 120)).map(() => randomInt(rng, 256)));
    } else {
      const base = seeds[randomInt(rng, seeds.length)]!;
      bytes = Buffer.from(base.subarray(0, randomInt(rng, base.length + 4)));
      for (let k = randomInt(rng, 5); k > 0 && bytes.length > 0; k--) bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
      // Keep it a query most of the time so the deeper paths run.
      if (bytes.length > 2 && randomInt(rng, 4) > 0) bytes[2] = bytes[2]! & 0x7f;
    }
    let o: QueryOutcome;
    try {
      o = ask(bytes, randomInt(rng, 2) === 0 ? 'udp' : 'tcp', i);
    } catch (err) {
      t.fail(`seed ${seed} case ${i}: threw ${String(err)} on ${bytes.toString('hex')}`);
      return;
    }
    counts[o.kind]++;
    if (o.kind === 'reply') {
      try {
        const p = packet.decode(o.bytes);
        if (p.id !== bytes.readUInt16BE(0) || p.type !== 'response') throw new Error('id or QR wrong');
      } catch (err) {
        t.fail(`seed ${seed} case ${i}: reply does not parse (${String(err)}): ${o.bytes.toString('hex')}`);
        return;
      }
    }
  }
  t.ok(counts.reply > 1000 && counts.drop > 100, `outcomes: ${JSON.stringify(counts)}`);
});
