// Structured, levelled logging. Quiet by default (info); a message plus fields,
// one JSON object or one key=value line per event. Per-packet events must stay
// at debug and be guarded by `enabled('debug')` before any formatting.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, string | number | boolean | null | undefined>;

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export function parseLogLevel(text: string): LogLevel | null {
  return text in LEVEL_RANK ? (text as LogLevel) : null;
}

export interface Logger {
  enabled(level: LogLevel): boolean;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every event, like mesh's per-connection prefix. */
  child(fields: LogFields): Logger;
}

export type LogSink = (line: string) => void;

export class TextLogger implements Logger {
  constructor(
    private readonly level: LogLevel,
    private readonly sink: LogSink = (line) => process.stderr.write(line + '\n'),
    private readonly base: LogFields = {},
    private readonly clockNow: () => number = Date.now,
  ) {}

  enabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] >= LEVEL_RANK[this.level];
  }

  debug(msg: string, fields?: LogFields): void { this.log('debug', msg, fields); }
  info(msg: string, fields?: LogFields): void { this.log('info', msg, fields); }
  warn(msg: string, fields?: LogFields): void { this.log('warn', msg, fields); }
  error(msg: string, fields?: LogFields): void { this.log('error', msg, fields); }

  child(fields: LogFields): Logger {
    return new TextLogger(this.level, this.sink, { ...this.base, ...fields }, this.clockNow);
  }

  private log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    let line = `${new Date(this.clockNow()).toISOString()} ${level.toUpperCase()} ${msg}`;
    const all = fields ? { ...this.base, ...fields } : this.base;
    for (const [k, v] of Object.entries(all)) {
      if (v === undefined) continue;
      const s = String(v);
      line += ` ${k}=${/[\s"=]/.test(s) ? JSON.stringify(s) : s}`;
    }
    this.sink(line);
  }
}

export const silentLogger: Logger = new TextLogger('silent', () => undefined);
