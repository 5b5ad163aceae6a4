"""Every way usher closes a client, over implicit TLS with usher's own
record layer (the default, release_after_handshake = yes): the client gets
its last words, the worker lives on, and the other sessions on it still
answer.

These close paths write the BYE into a TLS filter whose callbacks run
inside that write; a pre-auth LOGOUT used to free the client there and
crash the worker (use after free in client_close). The master restarts a
dead worker silently, so each test also counts worker exits in the log."""
import re
import socket
import ssl
import time
import unittest

import harness
from harness import USERS


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


CTX = client_ctx()


class TlsLine(harness.RawClient):
    """A line-oriented IMAP client over implicit TLS that can tell how the
    TLS session ended."""

    def __init__(self, port, timeout=10):
        super().__init__(port, tls_ctx=CTX, timeout=timeout)

    def rest(self):
        """Everything up to the end of the TLS stream, and how it ended:
        'close_notify' (a clean TLS close) or 'eof' (TCP EOF without it)."""
        data = self.buf
        self.buf = b''
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return data, 'close_notify'
                data += chunk
        except ssl.SSLEOFError:
            return data, 'eof'
        except (ConnectionResetError, ssl.SSLError) as e:
            return data, 'error: %s' % e

    def login(self, user):
        self.send(b'l LOGIN %s %s\r\n' % (user.encode(), USERS[user].encode()))
        return self.until_tagged(b'l')[-1]


def worker_exits(u):
    return [l for l in u.log().splitlines() if 'event=child_exit' in l and 'role=worker' in l]


class TlsClosePaths(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        cls.u = cls.env.usher(backends=[cls.b1], workers=2, extra={
            'limits': {'preauth_timeout': '1s', 'max_bad_commands': 3, 'max_line': 1024},
            'auth': {'max_attempts': 2, 'failure_delay': '10ms'}})

    @classmethod
    def tearDownClass(cls):
        reports = cls.env.close()
        assert reports == [], '\n'.join(reports)

    def setUp(self):
        # Sessions on both workers that must outlive every close below.
        self.others = []
        for i in range(6):
            c = TlsLine(self.u.tls_port)
            self.assertIn(b'OK', c.login('user%02d' % (i + 1)))
            self.others.append(c)

    def tearDown(self):
        for i, c in enumerate(self.others):
            c.send(b'n%d NOOP\r\n' % i)
            self.assertIn(b'OK', c.until_tagged(b'n%d' % i)[-1])
            c.close()
        self.assertEqual(worker_exits(self.u), [])
        self.assertEqual(self.u.sanitizer_reports(), [])

    def closed_with(self, c, words):
        """The last words came, then the TLS session ended with close_notify."""
        data, how = c.rest()
        self.assertIn(words, data)
        self.assertEqual(how, 'close_notify')
        return how

    def test_a_hundred_preauth_logouts(self):
        for i in range(100):
            c = TlsLine(self.u.tls_port)
            c.send(b'a LOGOUT\r\n')
            data, how = c.rest()
            self.assertEqual(data, b'* BYE Logging out.\r\na OK Logout completed.\r\n')
            self.assertEqual(how, 'close_notify')
            c.close()

    def test_preauth_timeout(self):
        c = TlsLine(self.u.tls_port)
        self.closed_with(c, b'* BYE')
        c.close()

    def test_too_many_bad_commands(self):
        c = TlsLine(self.u.tls_port)
        c.send(b'x1 FOO\r\nx2 FOO\r\nx3 FOO\r\nx4 FOO\r\n')
        self.closed_with(c, b'* BYE')
        c.close()

    def test_too_many_failed_logins(self):
        c = TlsLine(self.u.tls_port)
        for i in range(2):
            c.send(b'f%d LOGIN alice wrong\r\n' % i)
            try:
                c.until_tagged(b'f%d' % i)
            except EOFError:
                break
        self.closed_with(c, b'')
        c.close()

    def test_literal_too_big_gets_bye_toobig(self):
        c = TlsLine(self.u.tls_port)
        c.send(b'a LOGIN {999999999+}\r\n')
        self.closed_with(c, b'* BYE [TOOBIG]')
        c.close()

    def test_kick_of_a_user_with_sessions_on_both_workers(self):
        victims, workers = [], set()
        while len(workers) < 2:   # the workers take turns; go on until both have one
            self.assertLess(len(victims), 40, 'all sessions on one worker')
            c = TlsLine(self.u.tls_port)
            self.assertIn(b'OK', c.login('carol'))
            victims.append(c)
            workers = set(re.findall(r'proc=(worker\d+) event=login [^\n]*user="carol"',
                                     self.u.log()))
        self.assertNotIn('error', self.u.admin('kick carol'))
        for c in victims:
            self.closed_with(c, b'* BYE')
            c.close()


if __name__ == '__main__':
    unittest.main()
