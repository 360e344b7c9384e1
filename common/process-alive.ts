// Whether a process still runs, as the CLI, the daemon's pid-file check and
// the tests need to know it: a zombie has exited (it only waits for its parent
// to reap it), and EPERM means it exists but belongs to someone else.

import fs from 'node:fs';

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
