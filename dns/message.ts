// DNS messages as the server sees them: a strict parser for queries (header,
// the one question, and the OPT record of EDNS) and the builder of replies.
// Parsing is our own, not dns-packet's decoder: every read is bounds-checked,
// names are capped at 255 bytes and 128 compression jumps, and the question's
// raw bytes are kept so a reply echoes it exactly (case, unknown types and
// classes included). Replies' records are encoded with dns-packet, which never
// compresses names, so the raw question can be spliced in front of them.
//
//   header (RFC 1035 §4.1.1), 12 bytes:
//   +--------+--------------------------------------+------+------+------+------+
//   | id u16 | QR|opcode(4)|AA|TC|RD|RA|Z|AD|CD|rcode(4) | QD   | AN   | NS   | AR   |
//   +--------+--------------------------------------+------+------+------+------+
//   question: name (labels, no pointers here), qtype u16, qclass u16

import * as packet from 'dns-packet';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;
export type Rcode = (typeof RCODE)[keyof typeof RCODE];
export const QTYPE = { A: 1, NS: 2, SOA: 6, PTR: 12, AAAA: 28, OPT: 41, ANY: 255 } as const;
export const QCLASS_IN = 1;
export const QCLASS_ANY = 255;
/** mDNS (RFC 6762 §5.4): the top bit of a question's class asks for a unicast reply. */
export const QCLASS_UNICAST_RESPONSE_BIT = 0x8000;

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const HEADER_BYTES = 12;
const MAX_NAME_WIRE_BYTES = 255;
const MAX_POINTER_JUMPS = 128;

export interface Edns {
  udpPayloadBytes: number;
  version: number;
  /** Where udpPayloadBytes sits in the query's bytes (the forwarder lowers it in place). */
  sizeOffset: number;
}

export interface ParsedQuery {
  id: number;
  opcode: number;
  recursionDesired: boolean;
  /** The question name as sent, labels joined with '.'; '' for the root. */
  qname: string;
  qtype: number;
  /** Without the mDNS unicast-response bit. */
  qclass: number;
  unicastResponse: boolean;
  /** Raw bytes of the question, echoed in replies. */
  questionBytes: Uint8Array;
  edns: Edns | null;
}

export type ParseResult =
  | { kind: 'query'; query: ParsedQuery }
  /** Not a query we can answer, but the header is readable: reply with this rcode (FORMERR, NOTIMP). */
  | { kind: 'error'; id: number; opcode: number; recursionDesired: boolean; rcode: Rcode; why: string; query: ParsedQuery | null }
  /** Nothing to reply to: too short for a header, or a response (answering those could loop). */
  | { kind: 'drop'; why: 'short' | 'response' };

class Malformed extends Error {}

function u16(buf: Uint8Array, off: number): number {
  if (off + 2 > buf.length) throw new Malformed(`truncated at byte ${off}`);
  return ((buf[off] as number) << 8) | (buf[off + 1] as number);
}

/** The name being read, as text: labels and dots (at most 254 bytes for a name of 255). */
const nameText = Buffer.alloc(MAX_NAME_WIRE_BYTES);
let nameTextBytes = 0;

/**
 * Walks a name at `off` and returns the offset after it (after the first
 * pointer, when there is one). With `text`, its labels joined by '.' are left
 * in nameText[0, nameTextBytes). Bounds, the 255-byte cap and pointers are
 * checked the same either way.
 */
function walkName(buf: Uint8Array, off: number, allowPointers: boolean, text: boolean): number {
  let pos = off;
  let end = -1;
  let total = 1;
  let jumps = 0;
  nameTextBytes = 0;
  for (;;) {
    if (pos >= buf.length) throw new Malformed('name runs past the end');
    const len = buf[pos] as number;
    if (len === 0) {
      if (end < 0) end = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (!allowPointers) throw new Malformed('compression pointer in the question');
      const target = u16(buf, pos) & 0x3fff;
      if (end < 0) end = pos + 2;
      // Only backwards, and a bounded number of times: no loops.
      if (target >= pos || ++jumps > MAX_POINTER_JUMPS) throw new Malformed('bad compression pointer');
      pos = target;
      continue;
    }
    if ((len & 0xc0) !== 0) throw new Malformed(`label type 0x${len.toString(16)}`);
    if (pos + 1 + len > buf.length) throw new Malformed('label runs past the end');
    total += len + 1;
    if (total > MAX_NAME_WIRE_BYTES) throw new Malformed('name longer than 255 bytes');
    if (text) {
      if (nameTextBytes > 0) nameText[nameTextBytes++] = 0x2e;
      for (let i = pos + 1; i <= pos + len; i++) nameText[nameTextBytes++] = buf[i] as number;
    }
    pos += 1 + len;
  }
  return end;
}

/**
 * Reads a name at `off`; returns it and the offset after it (after the first
 * pointer, when there is one). Labels are read as latin1, so any byte is one
 * character and nothing is lost or invented; one string per name, built in a
 * scratch buffer.
 */
export function readName(buf: Uint8Array, off: number, allowPointers: boolean): { name: string; end: number } {
  const end = walkName(buf, off, allowPointers, true);
  return { name: nameText.toString('latin1', 0, nameTextBytes), end };
}

/** Skips one resource record; returns its type, the offset of its fixed part and the offset after it. */
function skipRecord(buf: Uint8Array, off: number): { type: number; fixed: number; end: number } {
  const nameEnd = walkName(buf, off, true, false);
  if (nameEnd + 10 > buf.length) throw new Malformed('record header runs past the end');
  const type = u16(buf, nameEnd);
  const rdlength = u16(buf, nameEnd + 8);
  const end = nameEnd + 10 + rdlength;
  if (end > buf.length) throw new Malformed('record data runs past the end');
  return { type, fixed: nameEnd, end };
}

export function parseQuery(buf: Uint8Array): ParseResult {
  if (buf.length < HEADER_BYTES) return { kind: 'drop', why: 'short' };
  const id = u16(buf, 0);
  const flags = u16(buf, 2);
  if ((flags & FLAG_QR) !== 0) return { kind: 'drop', why: 'response' };
  const opcode = (flags >> 11) & 0xf;
  const recursionDesired = (flags & FLAG_RD) !== 0;
  const fail = (rcode: Rcode, why: string, query: ParsedQuery | null = null): ParseResult =>
    ({ kind: 'error', id, opcode, recursionDesired, rcode, why, query });
  const qd = u16(buf, 4);
  const an = u16(buf, 6);
  const ns = u16(buf, 8);
  const ar = u16(buf, 10);
  if (qd !== 1) return fail(RCODE.FORMERR, `${qd} questions; a query has exactly one`);
  let query: ParsedQuery;
  try {
    const { name, end } = readName(buf, HEADER_BYTES, false);
    const qtype = u16(buf, end);
    const rawClass = u16(buf, end + 2);
    query = {
      id, opcode, recursionDesired, qname: name, qtype,
      qclass: rawClass & ~QCLASS_UNICAST_RESPONSE_BIT,
      unicastResponse: (rawClass & QCLASS_UNICAST_RESPONSE_BIT) !== 0,
      // A copy, never a view (Buffer's slice is one): the buffer may be a receive slab reused after this query.
      questionBytes: Uint8Array.prototype.slice.call(buf, HEADER_BYTES, end + 4),
      edns: null,
    };
    let pos = end + 4;
    for (let i = 0; i < an + ns; i++) pos = skipRecord(buf, pos).end;
    for (let i = 0; i < ar; i++) {
      const rr = skipRecord(buf, pos);
      if (rr.type === QTYPE.OPT) {
        if (query.edns !== null) return fail(RCODE.FORMERR, 'more than one OPT record');
        query.edns = { udpPayloadBytes: u16(buf, rr.fixed + 2), version: buf[rr.fixed + 5] as number, sizeOffset: rr.fixed + 2 };
      }
      pos = rr.end;
    }
  } catch (err) {
    if (err instanceof Malformed) return fail(RCODE.FORMERR, err.message);
    throw err;
  }
  if (opcode !== 0) return fail(RCODE.NOTIMP, `opcode ${opcode}`, query);
  return { kind: 'query', query };
}

export interface ReplyParts {
  id: number;
  opcode: number;
  recursionDesired: boolean;
  rcode: Rcode;
  authoritative: boolean;
  /** Raw question, or null for a header-only reply (the question was unreadable). */
  questionBytes: Uint8Array | null;
  answers: packet.Answer[];
  authorities: packet.Answer[];
  /** Echo EDNS (RFC 6891 §6.1.1: only when the query had it). */
  edns: boolean;
  /** Largest reply allowed on this transport; over it, answers are dropped from the end and TC is set. */
  maxBytes: number;
}

/** The advertised EDNS size; set by the caller from constants so this file stays free of policy. */
export function buildReply(parts: ReplyParts, ednsUdpBytes: number): { bytes: Buffer; truncated: boolean; answers: number } {
  let answers = parts.answers;
  let authorities = parts.authorities;
  let truncated = false;
  for (;;) {
    const bytes = encodeReply(parts, answers, authorities, truncated, ednsUdpBytes);
    if (bytes.length <= parts.maxBytes || (answers.length === 0 && authorities.length === 0)) {
      return { bytes, truncated, answers: answers.length };
    }
    // RFC 2181 §9: set TC when the reply does not fit; whole records only.
    truncated = true;
    if (answers.length > 0) answers = answers.slice(0, -1);
    else authorities = authorities.slice(0, -1);
  }
}

function encodeReply(parts: ReplyParts, answers: packet.Answer[], authorities: packet.Answer[], truncated: boolean, ednsUdpBytes: number): Buffer {
  const flags = (parts.opcode << 11) | (parts.authoritative ? FLAG_AA : 0) | (truncated ? FLAG_TC : 0) |
    (parts.recursionDesired ? FLAG_RD : 0) | FLAG_RA | (parts.rcode & 0xf);
  const additionals: packet.Answer[] = parts.edns
    ? [{ type: 'OPT', name: '.', udpPayloadSize: ednsUdpBytes, extendedRcode: parts.rcode >> 4, ednsVersion: 0, flags: 0, flag_do: false, options: [] }]
    : [];
  const body = packet.encode({ id: parts.id, type: 'response', flags, questions: [], answers, authorities, additionals });
  if (parts.questionBytes === null) return body;
  const out = Buffer.concat([body.subarray(0, HEADER_BYTES), parts.questionBytes, body.subarray(HEADER_BYTES)]);
  out.writeUInt16BE(1, 4);
  return out;
}
