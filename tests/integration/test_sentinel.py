"""Redis Sentinel: one master, one replica, three sentinels, all real, on
loopback. The master is killed; the sentinels promote the replica; usher
finds the new master, keeps every seat that had been written, and routes by
Redis again."""
import imaplib
import json
import signal
import time
import unittest

import harness
from harness import USERS, backend_name


class SentinelTest(unittest.TestCase):
    def setUp(self):
        env = self.env = harness.Env()
        self.backends = [env.dovecot('backend1'), env.dovecot('backend2')]
        self.master = env.redis()
        self.replica = env.redis(replica_of=self.master)
        self.sentinels = [env.redis(monitor=self.master) for _ in range(3)]
        secret = env.secret_file('cluster.secret', 'sentinel-test-cluster-secret')
        addrs = ' '.join('127.0.0.1:%d' % s.port for s in self.sentinels)
        extra = {'redis': {'sentinels': addrs, 'master_name': 'usher', 'timeout': '300ms'},
                 'cache': {'secret_file': secret}, 'routing': {'seat_lease': '6s'}}
        self.proxies = [env.usher(workers=1, extra=extra) for _ in range(2)]

    def tearDown(self):
        rcs = [u.stop() for u in self.env.ushers]
        self.env.close()   # raises with the log lines of any crash
        self.assertEqual(rcs, [0] * len(rcs))

    def status(self, u):
        return json.loads(u.admin('status'))

    def wait(self, what, predicate, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        self.fail('timed out waiting for ' + what)

    def master_port(self):
        out = self.sentinels[0].command('SENTINEL', 'get-master-addr-by-name', 'usher')
        return int(out.splitlines()[1]) if out else 0

    def seats(self, r):
        return {k for k in r.command('KEYS', 'usher:*:seat').splitlines() if k}

    def test_failover(self):
        u1, u2 = self.proxies
        self.wait('usher on Redis', lambda: all(self.status(u)['redis'] == 'up' for u in self.proxies))
        held = {}
        for i, user in enumerate(['user%02d' % k for k in range(1, 11)]):
            m = imaplib.IMAP4('127.0.0.1', self.proxies[i % 2].port, timeout=30)
            m.login(user, USERS[user])
            held[user] = (m, backend_name(m))
        written = self.seats(self.master)
        self.assertEqual(len(written), 10)
        self.wait('the replica to copy the seats', lambda: self.seats(self.replica) >= written)

        self.master.proc.send_signal(signal.SIGKILL)
        self.master.proc.wait()
        self.wait('the sentinels to promote the replica',
                  lambda: self.master_port() == self.replica.port)
        self.wait('usher to follow',
                  lambda: all(self.status(u)['redis'] == 'up' for u in self.proxies))
        self.assertTrue(written <= self.seats(self.replica), 'a written seat was lost')

        # Logins go on through the new master, with cluster seats, and every
        # user stays where they were.
        before = self.status(u2)['cluster_seats']['attaches']
        for i, (user, (m, backend)) in enumerate(held.items()):
            n = imaplib.IMAP4('127.0.0.1', self.proxies[(i + 1) % 2].port, timeout=30)
            n.login(user, USERS[user])
            self.assertEqual(backend_name(n), backend)
            n.logout()
            m.noop()   # the held session was not disturbed
            m.logout()
        self.assertGreater(self.status(u2)['cluster_seats']['attaches'], before)


if __name__ == '__main__':
    unittest.main()
