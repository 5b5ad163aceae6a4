"""The login path's edges that the worker handles by itself: commands a
client pipelines behind its LOGIN, a client that leaves while sessiond is
answering, and backends that accept a connection but greet late or never
(a plain backend counts as up when it greets)."""
import json
import socket
import threading
import time
import unittest
from types import SimpleNamespace

import harness
from harness import USERS, RawClient


class SlowGreeter:
    """A plain TCP front for a real backend that waits `delay` seconds after
    accepting before it connects through (so the greeting comes late), or
    never greets at all (delay None)."""

    def __init__(self, name, target_port, delay):
        self.name = name
        self.delay = delay
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if self.delay is not None:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        time.sleep(self.delay)
        up = socket.create_connection(('127.0.0.1', self.target_port))
        self.held.append(up)

        def pipe(src, dst):
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
        pipe(conn, up)

    def close(self):
        self.stopping = True
        self.sock.close()
        for s in self.held:
            s.close()


class LoginPathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        cls.u = cls.env.usher(workers=1)

    @classmethod
    def tearDownClass(cls):
        rc = cls.u.stop()
        cls.env.close()   # raises with the log lines of any crash
        assert rc == 0, rc

    def test_commands_pipelined_behind_login_reach_the_backend(self):
        c = RawClient(self.u.port)
        c.send(b'a1 LOGIN alice "%s"\r\na2 SELECT INBOX\r\na3 NOOP\r\na4 LOGOUT\r\n'
               % USERS['alice'].encode())
        self.assertTrue(c.until_tagged(b'a1')[-1].startswith(b'a1 OK'))
        self.assertTrue(c.until_tagged(b'a2')[-1].startswith(b'a2 OK [READ-WRITE]'))
        self.assertTrue(c.until_tagged(b'a3')[-1].startswith(b'a3 OK'))
        self.assertTrue(c.until_tagged(b'a4')[-1].startswith(b'a4 OK'))
        self.assertTrue(c.closed())
        c.close()

    def test_a_failed_login_then_the_pipelined_next_one(self):
        c = RawClient(self.u.port)
        c.send(b'a1 LOGIN alice wrong\r\na2 LOGIN alice "%s"\r\na3 LOGOUT\r\n'
               % USERS['alice'].encode())
        self.assertTrue(c.until_tagged(b'a1')[-1].startswith(b'a1 NO [AUTHENTICATIONFAILED]'))
        self.assertTrue(c.until_tagged(b'a2')[-1].startswith(b'a2 OK'))
        self.assertTrue(c.until_tagged(b'a3')[-1].startswith(b'a3 OK'))
        c.close()

    def test_a_client_that_leaves_during_its_login_holds_no_session(self):
        for _ in range(20):
            c = RawClient(self.u.port)
            c.send(b'a1 LOGIN bob "%s"\r\n' % USERS['bob'].encode())
            c.close()
        deadline = time.time() + 5
        while time.time() < deadline:
            sessions = json.loads(self.u.admin('sessions'))
            if not [s for s in sessions.get('sessions', []) if s.get('user') == 'bob']:
                break
            time.sleep(0.1)
        else:
            self.fail('sessions left behind: %s' % sessions)
        # The user is served normally afterwards.
        c = RawClient(self.u.port)
        c.send(b'a1 LOGIN bob "%s"\r\n' % USERS['bob'].encode())
        self.assertTrue(c.until_tagged(b'a1')[-1].startswith(b'a1 OK'))
        c.close()


class SlowBackendTest(unittest.TestCase):
    """connect_timeout covers the TCP connect; a backend that is connected
    but slow to greet has the login_timeout."""

    def setUp(self):
        self.env = harness.Env()
        self.b1 = self.env.dovecot('backend1')
        self.front = self.u = None

    def tearDown(self):
        if self.front:
            self.front.close()
        rc = self.u.stop() if self.u else 0
        self.env.close()   # raises with the log lines of any crash
        self.assertEqual(rc, 0)

    def usher_behind(self, delay, login_timeout):
        self.front = SlowGreeter('backend1', self.b1.port, delay)
        self.u = self.env.usher(backends=[SimpleNamespace(name='backend1', port=self.front.port)],
                                workers=1,
                                extra={'limits': {'connect_timeout': '1s',
                                                   'login_timeout': login_timeout}})

    def test_a_greeting_later_than_connect_timeout_is_waited_for(self):
        self.usher_behind(2.0, '10s')
        c = RawClient(self.u.port, timeout=15)
        t0 = time.time()
        c.send(b'a1 LOGIN alice "%s"\r\n' % USERS['alice'].encode())
        self.assertTrue(c.until_tagged(b'a1')[-1].startswith(b'a1 OK'))
        self.assertGreater(time.time() - t0, 1.8)
        c.send(b'a2 SELECT INBOX\r\n')
        self.assertTrue(c.until_tagged(b'a2')[-1].startswith(b'a2 OK'))
        c.close()
        self.assertNotIn('connect_timeout', self.u.log())

    def test_a_backend_that_never_greets_fails_the_login_in_time(self):
        self.usher_behind(None, '2s')
        c = RawClient(self.u.port, timeout=20)
        t0 = time.time()
        c.send(b'a1 LOGIN alice "%s"\r\n' % USERS['alice'].encode())
        answer = c.until_tagged(b'a1')[-1]
        self.assertTrue(answer.startswith(b'a1 NO [UNAVAILABLE]'), answer)
        self.assertLess(time.time() - t0, 12)
        log = self.u.log()
        self.assertIn('reason=login_timeout', log)
        self.assertNotIn('reason=connect_timeout', log)
        c.close()


if __name__ == '__main__':
    unittest.main()
