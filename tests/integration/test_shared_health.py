"""Backend verdicts shared through Redis ([routing] share_health): two
proxies, one Redis, two real Dovecot backends. Proxy A runs fast health
checks; proxy B runs none and holds no session, so whatever B knows of a
dead backend it has from A. B must stop seating users there at once, its
first login attempt must go to the other backend, and the verdict must
end: when A sees the backend back, or by its expiry when A is gone."""
import imaplib
import json
import os
import signal
import time
import unittest

import harness
from harness import USERS, backend_name, deliver, descendants
from test_rehome import Session

RETRY_MS = 5000
CHECKED = {'health_interval': '200ms', 'health_fall': 1, 'health_rise': 1,
           'health_timeout': '1s', 'backend_retry': '%dms' % RETRY_MS}
UNCHECKED = {'health_interval': '0', 'backend_retry': '%dms' % RETRY_MS}


class SharedHealth(unittest.TestCase):

    def setUp(self):
        env = self.env = harness.Env()
        self.b1, self.b2 = env.dovecot('backend1'), env.dovecot('backend2')
        self.redis = env.redis()
        self.secret = env.secret_file('cluster.secret', 'a-secret-for-shared-health')
        self.a = env.usher(workers=1, extra=self.sections(CHECKED))
        self.b = env.usher(workers=1, extra=self.sections(UNCHECKED))

    def tearDown(self):
        self.assertEqual(self.env.close(), [])

    def sections(self, routing):
        return {'redis': {'address': '127.0.0.1:%d' % self.redis.port, 'timeout': '300ms'},
                'cache': {'secret_file': self.secret}, 'routing': dict(routing)}

    def status(self, u):
        return json.loads(u.admin('status'))

    def state(self, u, name='backend1'):
        return {b['name']: b['state'] for b in self.status(u)['backends']}[name]

    def seated_on_backend1(self, u):
        """A user u seats on backend1 (logged in once and out again)."""
        for user in sorted(USERS):
            m = imaplib.IMAP4('127.0.0.1', u.port, timeout=10)
            m.login(user, USERS[user])
            where = backend_name(m)
            m.logout()
            if where == 'backend1':
                return user
        self.fail('nobody is seated on backend1')

    def kill_backend1_and_wait_for_b(self):
        """Kills backend1; A's checks notice it, B must follow within 1 s."""
        self.b1.kill()
        self.assertTrue(harness.wait_until(lambda: self.state(self.a) == 'unhealthy', 5),
                        self.state(self.a))
        self.assertTrue(harness.wait_until(lambda: self.state(self.b) == 'peer_down', 1.0),
                        self.state(self.b))

    def test_idle_proxy_follows_and_recovers(self):
        user = self.seated_on_backend1(self.b)
        failures_before = self.status(self.b)['backend_failures']
        self.kill_backend1_and_wait_for_b()
        # The verdict is in Redis, A's and with an expiry of backend_retry.
        self.assertEqual(self.redis.command('GET', 'usher:health:backend1'),
                         'usher-%d' % self.a.port)
        self.assertTrue(0 < int(self.redis.command('PTTL', 'usher:health:backend1')) <= RETRY_MS)
        # The user's seat is on the dead backend: B re-seats them on the
        # other one without trying the dead one first.
        m = imaplib.IMAP4('127.0.0.1', self.b.port, timeout=10)
        m.login(user, USERS[user])
        self.assertEqual(backend_name(m), 'backend2')
        m.logout()
        sb, sa = self.status(self.b), self.status(self.a)
        self.assertEqual(sb['backend_failures'], failures_before)
        self.assertGreaterEqual(sb['verdicts_received'], 1)
        self.assertEqual(sb['verdicts_sent'], 0)        # a learned verdict is not passed on
        self.assertGreaterEqual(sa['verdicts_sent'], 1)
        self.assertEqual(sa['verdicts_received'], 0)    # its own message came back: ignored
        # Back again: A's checks see it, A withdraws its verdict, B follows.
        self.b1.start()
        self.assertTrue(harness.wait_until(lambda: self.state(self.a) == 'up', 5))
        self.assertTrue(harness.wait_until(lambda: self.state(self.b) == 'up', 1.0),
                        self.state(self.b))
        self.assertEqual(self.redis.command('EXISTS', 'usher:health:backend1'), '0')

    def test_verdict_outlives_no_one(self):
        """A proxy that starts learns the live verdicts from Redis; with the
        proxy that gave them gone, they end by themselves after
        backend_retry, and nothing keeps the backend out longer."""
        self.kill_backend1_and_wait_for_b()
        t0 = time.time()
        c = self.env.usher(workers=1, extra=self.sections(UNCHECKED))
        self.assertTrue(harness.wait_until(lambda: self.state(c) == 'peer_down', 2.0),
                        self.state(c))
        self.assertEqual(self.a.stop(), 0)   # it will never say "up"
        self.b1.start()
        self.assertEqual(self.state(self.b), 'peer_down')
        left = RETRY_MS / 1000.0 - (time.time() - t0) + 1.0
        for u in (self.b, c):
            self.assertTrue(harness.wait_until(lambda: self.state(u) == 'up', left),
                            self.state(u))
        self.assertEqual(self.redis.command('EXISTS', 'usher:health:backend1'), '0')

    def test_hung_backend_moves_sessions_on_every_proxy(self):
        """A backend that hangs keeps its connections open and silent. A's
        checks see it; a proxy with no checks of its own learns the verdict
        and moves its users there, re-homing their live sessions
        (sessiond/evacuate.h)."""
        routing = dict(UNCHECKED, rehome='yes', master_user=self.env.master_user,
                       master_password_file=self.env.master_password_file)
        c = self.env.usher(workers=1, extra=self.sections(routing))
        user = self.seated_on_backend1(c)
        s = Session(c.port, user)
        s.idle()
        pids = descendants(self.b1.proc.pid) + [self.b1.proc.pid]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            self.assertTrue(harness.wait_until(lambda: self.state(c) == 'peer_down', 5),
                            self.state(c))
            deliver(self.env, user, 'after the hang')
            s.wait_exists(s.exists + 1, timeout=15)
            self.assertEqual(s.done()[-1].split()[1], b'OK')
            self.assertIn('event=evacuate backend=backend1 cause=shared', c.log())
            self.assertEqual(json.loads(c.admin('who ' + user))['seat'], 'backend2')
        finally:
            self.b1.kill()
        s.cmd(b'LOGOUT')


if __name__ == '__main__':
    unittest.main()
