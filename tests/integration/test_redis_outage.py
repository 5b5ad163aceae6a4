"""A Redis outage as the proxy sees it: Redis counts as up only when it
answers (PING), not when a TCP connect succeeds, so a frozen Redis (the
kernel still completes connects for it) is one outage, logged once, with
its duration when it ends; and the safe default (on_redis_down = refuse)
seats nobody on a guess meanwhile."""
import imaplib
import os
import signal
import time
import unittest

import harness
from harness import USERS


class FrozenRedis(unittest.TestCase):

    def setUp(self):
        self.env = harness.Env()
        self.b1 = self.env.dovecot('backend1')
        self.redis = self.env.redis()
        secret = self.env.secret_file('cluster.secret', 'a-secret-for-the-outage-test')
        self.u = self.env.usher(workers=1, extra={
            'redis': {'address': '127.0.0.1:%d' % self.redis.port, 'timeout': '200ms'},
            'cache': {'secret_file': secret}})

    def tearDown(self):
        reports = self.env.close()
        self.assertEqual(reports, [])

    def login(self, user):
        m = imaplib.IMAP4('127.0.0.1', self.u.port, timeout=30)
        try:
            typ, data = m.login(user, USERS[user])
            m.logout()
            return typ
        except imaplib.IMAP4.error as e:
            return str(e)

    def lines(self, event):
        """The event's log lines since the freeze (the first connect at start
        logs a redis_up of its own)."""
        log = self.u.log()[self.mark:]
        return [l for l in log.splitlines() if 'event=%s ' % event in l]

    def test_a_frozen_redis_is_one_outage(self):
        self.assertEqual(self.login('user01'), 'OK')
        self.mark = len(self.u.log())
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            deadline = time.time() + 4
            answers = []
            while time.time() < deadline:   # calls time out, the link is dropped, retried
                answers.append(self.login('user%02d' % (2 + len(answers) % 30)))
            self.assertTrue(all(a != 'OK' for a in answers), answers)
            self.assertTrue(any('UNAVAILABLE' in a for a in answers), answers)
            self.assertEqual(len(self.lines('redis_down')), 1, self.u.log()[-3000:])
            self.assertEqual(self.lines('redis_up'), [])
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        deadline = time.time() + 10
        while not self.lines('redis_up') and time.time() < deadline:
            time.sleep(0.1)
        up = self.lines('redis_up')
        self.assertEqual(len(up), 1, self.u.log()[-3000:])
        self.assertIn('outage_ms=', up[0])
        self.assertEqual(self.login('user01'), 'OK')


if __name__ == '__main__':
    unittest.main()
