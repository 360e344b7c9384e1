// What makes a forwarded query hard to answer for anyone but the upstream we
// asked: the pure part of the forwarder (no sockets, no timers, randomness
// passed in). An off-path attacker must guess the 16-bit id, the random source
// port (the adapter's job) and, with 0x20 (draft-vixie-dnsext-dns0x20), the
// case of every letter of the question name, which the upstream echoes byte for
// byte. Then the client gets the answer back under its own id and its own
// question casing, so our randomness never reaches it in the header or question.
//
//   query/reply header (RFC 1035 §4.1.1): id u16 at 0, flags u16 at 2 (QR is the
//   top bit), QDCOUNT u16 at 4; the question starts at byte 12. A question from
//   parseQuery never has compression pointers, and a reply's question cannot
//   either (a pointer must point backwards, into the header), so the two are
//   compared as raw bytes.

const HEADER_BYTES = 12;
const FLAG_QR = 0x80;

/** Fills a buffer of n bytes from a CSPRNG (the adapter passes crypto.randomBytes). */
export type RandomBytes = (n: number) => Uint8Array;

/** What an upstream answer must repeat to be taken. */
export interface UpstreamExpectation {
  id: number;
  /** The question as we sent it upstream: randomised name, qtype, qclass. */
  question: Uint8Array;
}

export type AnswerCheck = 'ok' | 'short' | 'not-a-response' | 'wrong-id' | 'wrong-question';

/**
 * The question with each ASCII letter of its name in a random case, one random
 * bit per letter; lengths, other bytes, qtype and qclass untouched. The input
 * is a well-formed question without pointers (parseQuery's `questionBytes`).
 */
export function randomiseCase(question: Uint8Array, randomBytes: RandomBytes): Uint8Array {
  const out = Uint8Array.from(question);
  const nameEnd = question.length - 4;
  const bits = randomBytes(Math.ceil(Math.max(nameEnd, 1) / 8));
  let pos = 0;
  while (pos < nameEnd) {
    const len = out[pos] as number;
    if (len === 0) break;
    for (let i = pos + 1; i <= pos + len && i < nameEnd; i++) {
      const b = out[i] as number;
      if (!isLetter(b)) continue;
      const bit = ((bits[i >> 3] as number) >> (i & 7)) & 1;
      out[i] = bit === 1 ? b | 0x20 : b & ~0x20;
    }
    pos += 1 + len;
  }
  return out;
}

/** The client's query as it goes upstream: our id and question in place of the client's (same length). */
export function upstreamQuery(raw: Uint8Array, exp: UpstreamExpectation): Buffer {
  const out = Buffer.from(raw);
  out.writeUInt16BE(exp.id, 0);
  out.set(exp.question, HEADER_BYTES);
  return out;
}

/**
 * Whether a datagram or TCP message is the answer to what we sent: a response,
 * our id, exactly one question and that question byte for byte (the name's case
 * included, then qtype and qclass). Anything else is dropped by the caller,
 * which keeps waiting for the real answer.
 */
export function checkAnswer(reply: Uint8Array, exp: UpstreamExpectation): AnswerCheck {
  if (reply.length < HEADER_BYTES) return 'short';
  if (((reply[2] as number) & FLAG_QR) === 0) return 'not-a-response';
  if ((((reply[0] as number) << 8) | (reply[1] as number)) !== exp.id) return 'wrong-id';
  if ((((reply[4] as number) << 8) | (reply[5] as number)) !== 1) return 'wrong-question';
  if (reply.length < HEADER_BYTES + exp.question.length) return 'wrong-question';
  for (let i = 0; i < exp.question.length; i++) {
    if (reply[HEADER_BYTES + i] !== exp.question[i]) return 'wrong-question';
  }
  return 'ok';
}

/**
 * The accepted answer as the client must see it: its own id and its own
 * question bytes (same length as ours, so the rest of the message and any
 * compression pointers into the question stay valid).
 */
export function clientAnswer(reply: Uint8Array, clientId: number, clientQuestion: Uint8Array): Buffer {
  const out = Buffer.from(reply);
  out.writeUInt16BE(clientId, 0);
  out.set(clientQuestion, HEADER_BYTES);
  return out;
}

function isLetter(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}
