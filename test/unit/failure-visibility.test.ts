// How a failed connection shows (router/mesh/failed-connections.ts failureVisibility):
// strangers are counted, operator mistakes are loud, routine ends are silent.

import t from 'tap';
import { failureVisibility } from '../../router/mesh/failed-connections';

t.test('failure visibility table', async (t) => {
  const rows: [Parameters<typeof failureVisibility>, ReturnType<typeof failureVisibility>][] = [
    [['duplicate-connection', false, true], 'none'],
    [['self-connection', true, true], 'none'],
    [['password-mismatch', false, false], 'loud'],
    [['name-collision', true, true], 'loud'],
    [['version', false, false], 'loud'],
    [['peer-key', false, false], 'loud'],
    [['limit', false, false], 'stranger'],
    [['conn-limit', false, false], 'stranger'],
    [['limit', false, true], 'quiet'],
    [['io', true, false], 'quiet'],
  ];
  for (const [args, want] of rows) t.equal(failureVisibility(...args), want, args.join(' '));
});
