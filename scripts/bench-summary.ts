// scripts/bench-summary: the one table at the end of scripts/bench.sh, and the
// line format every bench section uses to feed it. A section prints, among
// its own output, one line per headline figure:
//
//   SUMMARY <key> <value> <target> <label...>
//
//   key     the section, a dot, the figure: [a-z0-9][a-z0-9._-]* (e.g. dns.local_vs_dnsmasq)
//   value   a decimal number as it should be shown (e.g. 4.93), or '-' when not measured
//   target  '>=N', '<=N', '>N', '<N' (N a decimal number); '~N' (about N: shown, no verdict,
//           e.g. a memory slope that should stay flat); or '-' when the figure has none
//   label   the rest of the line: what the figure is, with the raw figures behind a ratio
//
// bench.sh keeps every section's output in a temporary file and runs this
// script on it at the end: it collects the SUMMARY lines in order (a later
// line with the same key replaces the earlier one), says whether each target
// is met, and lists lines that start with SUMMARY but do not parse, instead of
// failing. It decides nothing else: the exit code is 0 whenever the file
// could be read.
//
// Usage: node dist/scripts/bench-summary.js FILE

import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';

export type Comparison = '>=' | '<=' | '>' | '<' | '~';

export interface SummaryFigure {
  key: string;
  /** The value as printed by the section; null when it was not measured. */
  value: string | null;
  target: { op: Comparison; bound: number; text: string } | null;
  label: string;
}

const KEY_RE = /^[a-z0-9][a-z0-9._-]*$/;
const NUMBER_RE = /^-?\d+(\.\d+)?$/;
const TARGET_RE = /^(>=|<=|>|<|~)(-?\d+(?:\.\d+)?)$/;

/** One SUMMARY line for a section to print; throws on a key or target this format cannot carry. */
export function summaryLine(key: string, value: number, target: string, label: string, digits = 2): string {
  if (!KEY_RE.test(key)) throw new Error(`summary key ${JSON.stringify(key)} must match ${KEY_RE}`);
  if (target !== '-' && !TARGET_RE.test(target)) throw new Error(`summary target ${JSON.stringify(target)} must be like >=8, <50, ~0 or -`);
  const shown = Number.isFinite(value) ? value.toFixed(digits) : '-';
  return `SUMMARY ${key} ${shown} ${target} ${label.replace(/\s+/g, ' ').trim()}`;
}

/** Parses one line; null when it is not a SUMMARY line at all, an Error when it is one but malformed. */
export function parseSummaryLine(line: string): SummaryFigure | Error | null {
  if (!line.startsWith('SUMMARY')) return null;
  const m = /^SUMMARY (\S+) (\S+) (\S+)(?: (.*))?$/.exec(line.trimEnd());
  if (m === null) return new Error('expected SUMMARY <key> <value> <target> <label>');
  const [, key, value, target, label] = m as unknown as [string, string, string, string, string | undefined];
  if (!KEY_RE.test(key)) return new Error(`bad key ${JSON.stringify(key)}`);
  if (value !== '-' && !NUMBER_RE.test(value)) return new Error(`bad value ${JSON.stringify(value)} for ${key}`);
  let parsedTarget: SummaryFigure['target'] = null;
  if (target !== '-') {
    const t = TARGET_RE.exec(target);
    if (t === null) return new Error(`bad target ${JSON.stringify(target)} for ${key}`);
    parsedTarget = { op: t[1] as Comparison, bound: Number(t[2]), text: target };
  }
  return { key, value: value === '-' ? null : value, target: parsedTarget, label: (label ?? '').trim() };
}

/** 'yes', 'NO', or '' when there is no target, no value, or only an 'about' target. */
export function verdict(f: SummaryFigure): string {
  if (f.target === null || f.value === null || f.target.op === '~') return '';
  const v = Number(f.value);
  const { op, bound } = f.target;
  const met = op === '>=' ? v >= bound : op === '<=' ? v <= bound : op === '>' ? v > bound : v < bound;
  return met ? 'yes' : 'NO';
}

/** The figures of a whole output in first-seen order (a repeated key keeps its place, takes the new value), and the bad lines. */
export function collectSummary(text: string): { figures: SummaryFigure[]; bad: string[] } {
  const byKey = new Map<string, SummaryFigure>();
  const bad: string[] = [];
  for (const line of text.split('\n')) {
    const r = parseSummaryLine(line);
    if (r === null) continue;
    if (r instanceof Error) bad.push(`${line.slice(0, 200)}  (${r.message})`);
    else byKey.set(r.key, r);
  }
  return { figures: [...byKey.values()], bad };
}

export function renderSummary(figures: SummaryFigure[], bad: string[]): string {
  const rows = [['section', 'figure', 'value', 'target', 'met'], ...figures.map((f) => [
    f.key.split('.')[0] ?? f.key, f.label || f.key, f.value ?? 'not measured', f.target?.text ?? '', verdict(f),
  ])];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) => r.map((cell, c) => (c === 2 ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
  lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  if (figures.length === 0) lines.push('(no section printed a SUMMARY line)');
  for (const b of bad) lines.push(`unparsed: ${b}`);
  return lines.join('\n');
}

function main(): void {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node dist/scripts/bench-summary.js FILE\n');
    process.exit(2);
  }
  const { figures, bad } = collectSummary(readFileSync(file, 'utf8'));
  process.stdout.write(`\n==> summary: the headline figures against issue 14's targets (load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')})\n`);
  process.stdout.write(`${renderSummary(figures, bad)}\n`);
}

if (require.main === module) main();
