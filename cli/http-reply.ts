// Reads one HTTP/1.1 reply from the bytes of a connection, for the CLI's API
// client (cli/api-client.ts), which speaks HTTP over a plain node:net socket:
// node:http cost every CLI run a few ms to load and a few more to set up its
// first request (issue 14: the CLI's start is part of every `weave attach`).
// The client asks with `Connection: close`, so a reply is the status line,
// headers, then a body framed by Content-Length, by chunked encoding, or by
// the end of the connection.
//
// Pure: bytes in, a status and a body out, no I/O. The bytes come from
// whatever answers on the socket path, so they are hostile input: the head
// and the body are capped before they are kept, every length is checked
// before it is used, and anything malformed is a ReplyError naming what.

/** A status line and headers of a reply to one of our requests are far below this. */
export const MAX_HEAD_BYTES = 64 * 1024;

/** `no-reply`: the connection ended before a status line; `too-big`: past a cap; `malformed`: anything else. */
export type ReplyProblem = 'no-reply' | 'too-big' | 'malformed';

/** Its message reads after "the reply": "is over 65536 bytes", "ended early". */
export class ReplyError extends Error {
  override readonly name = 'ReplyError';

  constructor(readonly problem: ReplyProblem, message: string) {
    super(message);
  }
}

export interface HttpReply {
  status: number;
  body: Buffer;
}

type Framing = { kind: 'length'; bytes: number } | { kind: 'chunked' } | { kind: 'close' };

const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * Collects the bytes of one reply. push() each chunk as it arrives; once it
 * returns true the reply is whole (a Content-Length reply) and reply() has
 * it. Otherwise call reply() when the connection ends.
 */
export class HttpReplyReader {
  private readonly chunks: Buffer[] = [];
  private total = 0;
  private head: { status: number; framing: Framing; bodyStart: number } | null = null;

  constructor(private readonly maxBodyBytes: number) {}

  /** Adds received bytes; true when the reply is complete. Throws ReplyError past the caps or on a malformed head. */
  push(chunk: Buffer): boolean {
    this.total += chunk.length;
    if (this.total > this.maxBodyBytes + MAX_HEAD_BYTES) throw new ReplyError('too-big', `is over ${this.maxBodyBytes} bytes`);
    this.chunks.push(chunk);
    if (this.head === null) {
      const all = this.bytes();
      const end = all.indexOf(HEAD_END);
      if (end < 0) {
        if (all.length > MAX_HEAD_BYTES) throw new ReplyError('too-big', `has a head over ${MAX_HEAD_BYTES} bytes`);
        return false;
      }
      if (end > MAX_HEAD_BYTES) throw new ReplyError('too-big', `has a head over ${MAX_HEAD_BYTES} bytes`);
      this.head = { ...parseHead(all.subarray(0, end).toString('latin1')), bodyStart: end + HEAD_END.length };
      if (this.head.framing.kind === 'length' && this.head.framing.bytes > this.maxBodyBytes) {
        throw new ReplyError('too-big', `is over ${this.maxBodyBytes} bytes`);
      }
    }
    return this.head.framing.kind === 'length' && this.total - this.head.bodyStart >= this.head.framing.bytes;
  }

  /** The reply from the bytes so far, the connection having ended (or push() having said it is whole). */
  reply(): HttpReply {
    if (this.head === null) throw new ReplyError('no-reply', 'ended before its status line');
    const rest = this.bytes().subarray(this.head.bodyStart);
    const framing = this.head.framing;
    switch (framing.kind) {
      case 'length':
        if (rest.length < framing.bytes) throw new ReplyError('malformed', `ended after ${rest.length} of its ${framing.bytes} bytes`);
        return { status: this.head.status, body: rest.subarray(0, framing.bytes) };
      case 'chunked':
        return { status: this.head.status, body: decodeChunked(rest, this.maxBodyBytes) };
      case 'close':
        if (rest.length > this.maxBodyBytes) throw new ReplyError('too-big', `is over ${this.maxBodyBytes} bytes`);
        return { status: this.head.status, body: rest };
    }
  }

  private bytes(): Buffer {
    if (this.chunks.length > 1) this.chunks.splice(0, this.chunks.length, Buffer.concat(this.chunks));
    return this.chunks[0] ?? Buffer.alloc(0);
  }
}

/** Status and body framing from the head's text (status line and header lines, without the blank line). */
function parseHead(text: string): { status: number; framing: Framing } {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (m === null) throw new ReplyError('malformed', `is not HTTP: ${JSON.stringify((lines[0] ?? '').slice(0, 40))}`);
  let length: number | null = null;
  let chunked = false;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new ReplyError('malformed', `has a malformed header line ${JSON.stringify(line.slice(0, 40))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'content-length') {
      // Digits only, and short enough to be exact; a second, different length is a smuggling pattern.
      if (!/^\d{1,15}$/.test(value) || (length !== null && length !== Number(value))) throw new ReplyError('malformed', `has a bad Content-Length ${JSON.stringify(value.slice(0, 20))}`);
      length = Number(value);
    } else if (name === 'transfer-encoding') {
      if (value.toLowerCase() !== 'chunked') throw new ReplyError('malformed', `has an unsupported Transfer-Encoding ${JSON.stringify(value.slice(0, 20))}`);
      chunked = true;
    }
  }
  if (chunked && length !== null) throw new ReplyError('malformed', 'has both Content-Length and chunked encoding');
  const status = Number(m[1]);
  // 1xx, 204 and 304 carry no body whatever their headers say.
  if (status < 200 || status === 204 || status === 304) return { status, framing: { kind: 'length', bytes: 0 } };
  return { status, framing: chunked ? { kind: 'chunked' } : length !== null ? { kind: 'length', bytes: length } : { kind: 'close' } };
}

/** The body of a chunked encoding (RFC 9112 7.1); extensions ignored, trailers skipped. */
export function decodeChunked(bytes: Buffer, maxBytes: number): Buffer {
  const parts: Buffer[] = [];
  let total = 0;
  let off = 0;
  for (;;) {
    const eol = bytes.indexOf('\r\n', off, 'latin1');
    if (eol < 0) throw new ReplyError('malformed', 'ended inside a chunk');
    const sizeText = bytes.subarray(off, eol).toString('latin1').split(';')[0]?.trim() ?? '';
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) throw new ReplyError('malformed', `has a bad chunk size ${JSON.stringify(sizeText.slice(0, 20))}`);
    const size = parseInt(sizeText, 16);
    off = eol + 2;
    if (size === 0) return Buffer.concat(parts, total);
    total += size;
    if (total > maxBytes) throw new ReplyError('too-big', `is over ${maxBytes} bytes`);
    if (off + size + 2 > bytes.length) throw new ReplyError('malformed', 'ended inside a chunk');
    if (bytes[off + size] !== 0x0d || bytes[off + size + 1] !== 0x0a) throw new ReplyError('malformed', 'has a chunk that does not end where its size says');
    parts.push(bytes.subarray(off, off + size));
    off += size + 2;
  }
}
