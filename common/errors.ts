// The error base every part shares (router, ipam, dns each keep one class of
// their own on top of it, with their own code union), plus the two helpers
// every part needs. Callers branch on `code`, never on message text.

export class CodedError<Code extends string> extends Error {
  constructor(readonly code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Raised by the byte codecs (common/codec.ts) on hostile or damaged input. */
export type CodecErrorCode = 'decode' | 'limit';

export class CodecError extends CodedError<CodecErrorCode> {
  override readonly name = 'CodecError';

  static decode(what: string, detail: string): CodecError {
    return new CodecError('decode', `malformed ${what}: ${detail}`);
  }

  static limit(what: string, got: number, max: number): CodecError {
    return new CodecError('limit', `${what} is ${got}, over the limit of ${max}`);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Closes exhaustive switches over unions: unreachable unless the types lie. */
export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${JSON.stringify(value)}`);
}
