// The version printed by `weave version` and reported in status: package.json's.

import * as fs from 'node:fs';
import * as path from 'node:path';

export function packageVersion(): string {
  // dist/cli/version.js -> repo root is two levels up from dist/cli.
  for (const candidate of [path.join(__dirname, '..', '..', 'package.json'), path.join(__dirname, '..', 'package.json')]) {
    try {
      const parsed: unknown = JSON.parse(fs.readFileSync(candidate, 'utf8'));
      if (typeof parsed === 'object' && parsed !== null && 'version' in parsed && typeof parsed.version === 'string') return parsed.version;
    } catch {
      // try the next location
    }
  }
  return 'unknown';
}
