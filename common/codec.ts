// Bounds-checked byte reading and writing for every wire format. A reader
// treats its input as hostile: each read checks the remaining length first and
// fails with a coded error ('decode' or 'limit'), never a RangeError or a
// silent zero. The error is a CodecError unless a subclass names its own type
// (router/mesh's MeshReader throws RouterError, so mesh decoders keep one type).
// Strings and byte fields carry a length prefix that is checked against a
// caller-given maximum before anything is allocated.

import { CodecError } from './errors';

const textDecoder = new TextDecoder('utf-8', { fatal: true });
const textEncoder = new TextEncoder();

export class ByteReader {
  private pos: number;
  private readonly view: DataView;

  constructor(private readonly buf: Uint8Array, private readonly what: string, start = 0, private readonly end = buf.length) {
    this.pos = start;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get offset(): number { return this.pos; }
  get remaining(): number { return this.end - this.pos; }

  /** The one place a reader fails; subclasses override it to throw their part's error type. */
  protected fail(err: CodecError): never {
    throw err;
  }

  private need(n: number, field: string): void {
    if (this.end - this.pos < n) {
      this.fail(CodecError.decode(this.what, `truncated at ${field}: need ${n} bytes, have ${this.end - this.pos}`));
    }
  }

  u8(field: string): number { this.need(1, field); return this.view.getUint8(this.pos++); }
  u16(field: string): number { this.need(2, field); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32(field: string): number { this.need(4, field); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }

  /** An unsigned integer below 2^53 stored in 8 bytes; larger values are refused. */
  u53(field: string): number {
    this.need(8, field);
    const hi = this.view.getUint32(this.pos);
    const lo = this.view.getUint32(this.pos + 4);
    if (hi > 0x1fffff) this.fail(CodecError.decode(this.what, `${field} exceeds 2^53`));
    this.pos += 8;
    return hi * 0x100000000 + lo;
  }

  bytes(n: number, field: string): Uint8Array {
    this.need(n, field);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** u16 length prefix, then bytes; length checked against maxBytes first. */
  varBytes(maxBytes: number, field: string): Uint8Array {
    const n = this.u16(`${field} length`);
    if (n > maxBytes) this.fail(CodecError.limit(`${this.what} ${field} length`, n, maxBytes));
    return this.bytes(n, field);
  }

  /** u32 length prefix, then bytes; length checked against maxBytes first. */
  longBytes(maxBytes: number, field: string): Uint8Array {
    const n = this.u32(`${field} length`);
    if (n > maxBytes) this.fail(CodecError.limit(`${this.what} ${field} length`, n, maxBytes));
    return this.bytes(n, field);
  }

  string(maxBytes: number, field: string): string {
    const raw = this.varBytes(maxBytes, field);
    try {
      return textDecoder.decode(raw);
    } catch {
      this.fail(CodecError.decode(this.what, `${field} is not valid UTF-8`));
    }
  }


  /** Count prefix (u16) checked against maxCount. */
  count(maxCount: number, field: string): number {
    const n = this.u16(`${field} count`);
    if (n > maxCount) this.fail(CodecError.limit(`${this.what} ${field} count`, n, maxCount));
    return n;
  }

  /** Trailing bytes are tolerated for forward compatibility; this is for formats that forbid them. */
  expectEnd(): void {
    if (this.pos !== this.end) this.fail(CodecError.decode(this.what, `${this.end - this.pos} unexpected trailing bytes`));
  }
}

/** Growable writer; encoding is not on the per-frame path, so simplicity wins. */
export class ByteWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;

  constructor(initialBytes = 256) {
    this.buf = new Uint8Array(initialBytes);
    this.view = new DataView(this.buf.buffer);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): this { this.ensure(1); this.view.setUint8(this.pos, v); this.pos += 1; return this; }
  u16(v: number): this { this.ensure(2); this.view.setUint16(this.pos, v); this.pos += 2; return this; }
  u32(v: number): this { this.ensure(4); this.view.setUint32(this.pos, v >>> 0); this.pos += 4; return this; }

  u53(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`u53 out of range: ${v}`);
    this.ensure(8);
    this.view.setUint32(this.pos, Math.floor(v / 0x100000000));
    this.view.setUint32(this.pos + 4, v >>> 0);
    this.pos += 8;
    return this;
  }

  bytes(b: Uint8Array): this { this.ensure(b.length); this.buf.set(b, this.pos); this.pos += b.length; return this; }

  varBytes(b: Uint8Array): this {
    if (b.length > 0xffff) throw new RangeError(`varBytes too long: ${b.length}`);
    return this.u16(b.length).bytes(b);
  }

  longBytes(b: Uint8Array): this { return this.u32(b.length).bytes(b); }
  string(s: string): this { return this.varBytes(textEncoder.encode(s)); }


  count(n: number): this { return this.u16(n); }

  finish(): Uint8Array { return this.buf.slice(0, this.pos); }
}
