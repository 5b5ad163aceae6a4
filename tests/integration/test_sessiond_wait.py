"""Logins that arrive while a worker has no link to sessiond (usher just
started, sessiond restarting) wait for it, bounded by [auth] sessiond_wait
and sessiond_wait_queue, instead of being refused."""
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import harness
from harness import USERS, RawClient

CLIENTS = 50
USER_NAMES = sorted(u for u in USERS if u.startswith('user'))


class LoginStorm:
    """CLIENTS threads, each logging in and out again and again until
    stop(): connect, LOGIN, read the tagged answer, LOGOUT. Counts the
    answers; a refusal is any tagged NO or BAD, or a connection that ends
    before the answer."""

    def __init__(self, port):
        self.port = port
        self.ok = self.refused = 0
        self.refusals = []   # the first few answers that were not OK
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _one_login(self, user):
        c = RawClient(self.port, timeout=30)
        try:
            c.send(b'a LOGIN %s %s\r\n' % (user.encode(), USERS[user].encode()))
            answer = c.until_tagged(b'a')[-1]
            if answer.startswith(b'a OK'):
                c.send(b'b LOGOUT\r\n')
                c.until_tagged(b'b')
            return answer
        except (EOFError, OSError) as e:
            return ('connection: %r' % e).encode()
        finally:
            c.close()

    def _run(self, i):
        n = 0
        while self.running:
            user = USER_NAMES[(i + n * CLIENTS) % len(USER_NAMES)]
            n += 1
            answer = self._one_login(user)
            with self.lock:
                if answer.startswith(b'a OK'):
                    self.ok += 1
                else:
                    self.refused += 1
                    if len(self.refusals) < 5:
                        self.refusals.append(answer)

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(60)
        return self.ok, self.refused


class UnreadyUsher(harness.Usher):
    """An usher whose start returns as soon as its port accepts, without
    waiting for the workers' link to sessiond (the harness's own start
    waits for it)."""

    def start(self):
        self.logf = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([harness.USHER_BIN, '-c', self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        harness.wait_port(self.port, proc=self.proc, timeout=15)


def report(what, ok, refused, refusals):
    print('\n%s: %d logins OK, %d refused %r' % (what, ok, refused, refusals[:2]),
          file=sys.stderr)


class SessiondWaitTest(unittest.TestCase):
    def setUp(self):
        self.env = harness.Env()
        self.env.dovecot('backend1')
        self.env.dovecot('backend2')

    def tearDown(self):
        self.env.close()   # raises with the log lines of any crash

    def test_no_login_refused_right_after_start(self):
        u = UnreadyUsher(self.env, self.env.backends, workers=2)
        self.env.ushers.append(u)
        storm = LoginStorm(u.port)   # the port has just begun to accept
        time.sleep(1.0)
        ok, refused = storm.stop()
        report('first second after start', ok, refused, storm.refusals)
        print([line.split('event=')[1] for line in u.log().splitlines()
               if 'held_logins=' in line], file=sys.stderr)
        self.assertEqual(refused, 0, storm.refusals)
        self.assertGreater(ok, CLIENTS)
        self.assertIn('event=sessiond_up', u.log())

    def test_no_login_refused_while_sessiond_restarts(self):
        u = self.env.usher(workers=2)
        ups = u.log().count('event=sessiond_up')
        storm = LoginStorm(u.port)
        time.sleep(0.3)
        sessiond = u.child_pids('sessiond')
        self.assertEqual(len(sessiond), 1)
        u.expect_child_exits('sessiond', count=1, signals=(signal.SIGKILL,))
        os.kill(sessiond[0], signal.SIGKILL)
        deadline = time.time() + 15
        while u.log().count('event=sessiond_up') < ups + u.workers and time.time() < deadline:
            time.sleep(0.02)
        down = u.log().count('event=sessiond_down')
        time.sleep(0.5)   # and logins go on after it is back
        ok, refused = storm.stop()
        report('across a sessiond restart', ok, refused, storm.refusals)
        print([line.split('event=')[1] for line in u.log().splitlines()
               if 'event=sessiond_down' in line or 'held_logins=' in line], file=sys.stderr)
        self.assertEqual(u.log().count('event=sessiond_up'), ups + u.workers)
        self.assertEqual(down, u.workers)
        self.assertEqual(refused, 0, storm.refusals)
        self.assertGreater(ok, CLIENTS)


class SessiondWaitBoundsTest(unittest.TestCase):
    """With the master stopped (SIGSTOP), a killed sessiond stays down as
    long as the test wants: the bounds of the wait can be seen."""

    def setUp(self):
        self.env = harness.Env()
        self.env.dovecot('backend1')
        self.u = self.env.usher(workers=1, extra={
            'auth': {'sessiond_wait': '1500ms', 'sessiond_wait_queue': 2}})

    def tearDown(self):
        os.kill(self.u.proc.pid, signal.SIGCONT)
        self.env.close()   # raises with the log lines of any crash

    def sessiond_away(self):
        """Kills sessiond with the master stopped; returns once the worker
        has noticed."""
        downs = self.u.log().count('event=sessiond_down')
        sessiond = self.u.child_pids('sessiond')
        os.kill(self.u.proc.pid, signal.SIGSTOP)
        self.u.expect_child_exits('sessiond', count=1, signals=(signal.SIGKILL,))
        os.kill(sessiond[0], signal.SIGKILL)
        deadline = time.time() + 10
        while self.u.log().count('event=sessiond_down') == downs and time.time() < deadline:
            time.sleep(0.01)

    def login(self, user):
        c = RawClient(self.u.port)
        c.send(b'a LOGIN %s %s\r\n' % (user.encode(), USERS[user].encode()))
        return c

    def test_held_logins_are_sent_once_sessiond_is_back(self):
        self.sessiond_away()
        held = [self.login('alice'), self.login('bob')]
        start = time.time()
        over = self.login('carol')   # past sessiond_wait_queue: refused at once
        self.assertTrue(over.line().startswith(b'a NO [UNAVAILABLE]'))
        self.assertLess(time.time() - start, 1.0)
        time.sleep(0.3)
        os.kill(self.u.proc.pid, signal.SIGCONT)   # the master restarts sessiond
        for c in held:
            self.assertTrue(c.until_tagged(b'a')[-1].startswith(b'a OK'))
            c.close()
        over.close()
        self.assertIn('held_logins=2', self.u.log())

    def test_login_in_flight_when_sessiond_dies_is_sent_again(self):
        sessiond = self.u.child_pids('sessiond')
        os.kill(sessiond[0], signal.SIGSTOP)   # the LOGIN is sent, not answered
        c = self.login('alice')
        time.sleep(0.2)   # the LOGIN waits in sessiond's socket
        self.u.expect_child_exits('sessiond', count=1, signals=(signal.SIGKILL,))
        os.kill(sessiond[0], signal.SIGKILL)
        self.assertTrue(c.until_tagged(b'a')[-1].startswith(b'a OK'))
        self.assertIn('event=sessiond_down resend=1 failed=0', self.u.log())
        c.close()

    def test_wait_runs_out_after_sessiond_wait(self):
        self.sessiond_away()
        start = time.time()
        c = self.login('alice')
        answer = c.until_tagged(b'a')[-1]
        waited = time.time() - start
        self.assertTrue(answer.startswith(b'a NO [UNAVAILABLE]'), answer)
        self.assertGreater(waited, 1.4)
        self.assertLess(waited, 3.0)
        self.assertIn('event=sessiond_wait_timeout', self.u.log())
        os.kill(self.u.proc.pid, signal.SIGCONT)
        c.send(b'b LOGIN alice alice-pw\r\n')   # the same connection, sessiond back
        self.assertTrue(c.until_tagged(b'b')[-1].startswith(b'b OK'))
        c.close()


if __name__ == '__main__':
    unittest.main()
