"""Hostile clients: thousands of connections that dribble partial lines one
byte at a time (slowloris). usher stays within its limits (the pre-auth
timeout and total budget close them) and a normal client still logs in
within a second meanwhile."""
import imaplib
import resource
import socket
import time
import unittest

import harness
from harness import USERS

SLOW = 3000   # connections; each side of usher needs one fd per connection


class HostileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        cls.env = harness.Env()
        cls.env.dovecot('backend1')
        cls.u = cls.env.usher(extra={'limits': {'preauth_timeout': '3s', 'preauth_budget': '6s',
                                                'max_connections': 20000}})

    @classmethod
    def tearDownClass(cls):
        rc = cls.u.stop()
        cls.env.close()   # raises with the log lines of any crash
        assert rc == 0, rc

    def timed_login(self):
        t0 = time.time()
        m = imaplib.IMAP4('127.0.0.1', self.u.port, timeout=10)
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        m.logout()
        return time.time() - t0

    def test_slowloris(self):
        socks = []
        try:
            for _ in range(SLOW):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(('127.0.0.1', self.u.port))
                socks.append(s)
            payload = b'a1 LOGIN alice ' + b'x' * 200
            worst = 0.0
            closed = 0
            deadline = time.time() + 9
            i = 0
            while time.time() < deadline:
                # One byte on each connection, then a normal login.
                for s in socks:
                    try:
                        s.send(payload[i % len(payload):i % len(payload) + 1])
                    except OSError:
                        pass
                i += 1
                worst = max(worst, self.timed_login())
                time.sleep(0.25)
            for s in socks:   # by now the budget (6 s) has closed every one
                try:
                    while s.recv(65536, socket.MSG_DONTWAIT):   # greeting, BYE ...
                        pass
                    closed += 1                                   # ... then end of stream
                except BlockingIOError:
                    pass                                          # still open
                except OSError:
                    closed += 1                                   # reset: closed too
        finally:
            for s in socks:
                s.close()
        self.assertLess(worst, 1.0, 'a normal login took %.2f s under the attack' % worst)
        self.assertGreater(closed, SLOW * 0.9, 'usher did not close the slow connections')
        log = self.u.log()
        self.assertIn('reason=preauth', log)


if __name__ == '__main__':
    unittest.main()
