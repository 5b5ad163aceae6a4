"""A rolling restart of the backends, the most ordinary maintenance there
is: three real Dovecot backends are killed and restarted one after
another while clients log in without pause through two proxies sharing
Redis. No login may be refused while a backend is up (a failed connect's
retry penalty ends once health checks pass again, and a user whose seat
is on a backend that only looks unavailable is tried there), and no user
is ever seen on two backends (doveadm who, sampled throughout)."""
import imaplib
import json
import os
import signal
import threading
import time
import unittest

import harness
from harness import USERS, backend_name

HEALTH = {'health_interval': '300ms', 'health_fall': 2, 'health_rise': 1,
          'health_timeout': '1s', 'backend_retry': '30s', 'seat_lease': '6s'}


class RollingRestart(unittest.TestCase):

    def setUp(self):
        self.env = harness.Env()
        self.backends = [self.env.dovecot('backend%d' % i) for i in (1, 2, 3)]
        redis = self.env.redis()
        secret = self.env.secret_file('cluster.secret', 'a-secret-for-the-rolling-restart')
        sections = {'redis': {'address': '127.0.0.1:%d' % redis.port, 'timeout': '300ms'},
                    'cache': {'secret_file': secret}, 'routing': dict(HEALTH),
                    'limits': {'connect_timeout': '1s'}}
        self.proxies = [self.env.usher(workers=1, extra=sections) for _ in range(2)]

    def tearDown(self):
        self.assertEqual(self.env.close(), [])

    def client_loop(self, k, stop, results):
        users = ['user%02d' % i for i in range(1 + 10 * k, 11 + 10 * k)]
        n = 0
        while not stop.is_set():
            user = users[n % len(users)]
            u = self.proxies[n % 2]
            n += 1
            t0 = time.time()
            try:
                m = imaplib.IMAP4('127.0.0.1', u.port, timeout=20)
                m.login(user, USERS[user])
                seat = backend_name(m)
                m.logout()
                results.append(('ok', time.time() - t0, user, seat))
            except (imaplib.IMAP4.error, OSError) as e:
                results.append(('refused', time.time() - t0, user, str(e)))

    def sample_who(self, stop, violations):
        while not stop.is_set():
            seen = {}
            for b in self.backends:
                if b.proc is None:
                    continue
                for user in b.who():
                    seen.setdefault(user, set()).add(b.name)
            violations += [(u, s) for u, s in seen.items() if len(s) > 1]
            time.sleep(0.01)

    def test_kill_and_restart_each_backend_in_turn(self):
        stop, results, violations, seen = threading.Event(), [], [], []
        threads = [threading.Thread(target=self.client_loop, args=(k, stop, results))
                   for k in range(3)]
        threads.append(threading.Thread(target=self.sample_who, args=(stop, violations)))
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            for b in self.backends:
                os.kill(b.proc.pid, signal.SIGKILL)
                b.proc.wait()
                b.proc = None
                time.sleep(2.5)
                seen.append((b.name, 'dead', self.state_of(b.name)))
                b.start()
                time.sleep(3)
                seen.append((b.name, 'back', self.state_of(b.name)))
            time.sleep(2)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        refused = [r for r in results if r[0] == 'refused']
        lat = sorted(r[1] for r in results)
        p99 = lat[int(len(lat) * 0.99) - 1] if lat else 0
        print('rolling restart: logins=%d refused=%d p99_ms=%.0f' %
              (len(results), len(refused), p99 * 1000))
        self.assertGreater(len(results), 50)
        # Two backends are up and healthy at every moment: nothing is refused.
        self.assertEqual(refused, [])
        self.assertEqual(violations, [])
        # usherctl backends says why a backend is out and for how long.
        for name, when, (state, retry_ms) in seen:
            if when == 'dead':
                self.assertIn(state, ('unhealthy', 'failed', 'peer_down'), seen)
            else:
                self.assertEqual((state, retry_ms), ('up', 0), seen)

    def state_of(self, name):
        """(state, retry_ms) of a backend in proxy 1's usherctl backends."""
        for b in json.loads(self.proxies[0].admin('backends'))['backends']:
            if b['name'] == name:
                return b['state'], b['retry_ms']
        raise AssertionError('no backend %s' % name)


if __name__ == '__main__':
    unittest.main()
