// A fresh path for a test's API socket: in a private temporary directory
// (0700, ours, as router/api/unix-socket.ts requires of the socket's
// directory), removed at teardown with whatever the test left there.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function tempSocketPath(t: { teardown(fn: () => unknown): void }, name = 'weave.sock'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-api-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, name);
}
